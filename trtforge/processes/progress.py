"""Progress of long stages on stderr: which engine of how many, target, module, stage, elapsed,
and the stage's peak memory when it ends:

    [3/8] ampere_ada/unet build ...
    [3/8] ampere_ada/unet build 12.0s, RSS 1.2 GiB

The count is the engine (module, per target with [targets]) among those this run builds (those
with a stage to run: driver/explain.engines_to_build), in the order their first stage starts. On a terminal one line is rewritten in place twice a second
(`[3/8] ampere_ada/unet build 5.5s`); in CI (stderr not a TTY) each stage writes one plain line
when it starts and one when it ends, so a log shows what ran and how long without carriage-return
noise. Stages answered from the cache print nothing: a no-op build stays silent apart from its
status table."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from typing import TextIO

_ACTIVE: Progress | None = None


def active() -> Progress | None:
    """The CLI's progress display, for a stage that can report finer steps (the TensorRT builder's
    own phases); None when nothing displays progress (tests, --quiet, --json)."""
    return _ACTIVE


def _own_fd(stream: TextIO) -> TextIO:
    """A copy of the terminal's fd: the ticker keeps drawing while a stage sends fds 1 and 2 to
    its log (stage.capture_output)."""
    try:
        return open(os.dup(stream.fileno()), "w", buffering=1)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return stream  # no fd behind it (a test's stream): draw on it as it is


class Progress:
    def __init__(self, stream: TextIO, enabled: bool = True, interval_s: float = 0.5):
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and stream.isatty()
        self.stream = _own_fd(stream) if self.tty else stream
        self.interval_s = interval_s
        self._current: tuple[str, float] | None = None  # (label, start time)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._phase = ""
        self.total = 0  # engines this run builds (0: unknown, the count shows only the ordinal)
        self._expected: int | Callable[[], int] = 0
        self._ordinal: dict[str, int] = {}
        global _ACTIVE
        _ACTIVE = self if enabled else None

    def expect(self, total: int | Callable[[], int]) -> None:
        """How many engines (modules, times targets) this run builds: the count's denominator. A
        callable is asked when the first stage starts (a build whose stages all come from the
        cache never asks: the no-op build plans nothing twice)."""
        self._expected = total

    def _label(self, module: str, stage: str) -> str:
        if callable(self._expected):  # under self._lock: the first label asks, once
            self._expected = self.total = self._expected()
        else:
            self.total = self._expected
        n = self._ordinal.setdefault(module, len(self._ordinal) + 1)
        return f"[{n}/{max(self.total, n)}] {module} {stage}" if self.total else f"[{n}] {module} {stage}"

    def start(self, module: str, stage: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            label = self._label(module, stage)
            self._current = (label, time.perf_counter())
            self._phase = ""
        if self.tty:
            if self._thread is None:
                self._thread = threading.Thread(target=self._tick, name="trtforge-progress", daemon=True)
                self._thread.start()
        else:
            self._line(f"{label} ...")

    def done(self, module: str, stage: str, seconds: float, rss_mib: float | None = None) -> None:
        """The stage ended after `seconds`; `rss_mib`: its process's peak resident memory."""
        if not self.enabled:
            return
        with self._lock:
            label = self._label(module, stage)
            self._current = None
            if self.tty:
                self.stream.write("\r\033[K")
        self._line(f"{label} {seconds:.1f}s" + (f", RSS {memory(rss_mib)}" if rss_mib else ""))

    def phase(self, text: str) -> None:
        """A sub-step of the running stage, shown on the live line only (CI logs stay one line
        per stage)."""
        with self._lock:
            self._phase = text

    def close(self) -> None:
        """Stop the ticker and clear its line (also after a failure or Ctrl-C mid-stage)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            if self.tty and self._current is not None:
                self.stream.write("\r\033[K")
                self.stream.flush()
            self._current = None

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                if self._current is None:
                    continue
                label, t0 = self._current
                phase = f" ({self._phase})" if self._phase else ""
                self.stream.write(f"\r\033[K{label} {time.perf_counter() - t0:.1f}s{phase}")
                self.stream.flush()


def memory(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


class OnTarget:
    """A progress display that names the target: `ampere_ada/unet` for module `unet`."""

    def __init__(self, progress, target: str):
        self.progress, self.target = progress, target

    def start(self, module: str, stage: str) -> None:
        self.progress.start(f"{self.target}/{module}", stage)

    def done(self, module: str, stage: str, seconds: float, rss_mib: float | None = None) -> None:
        self.progress.done(f"{self.target}/{module}", stage, seconds, rss_mib)
