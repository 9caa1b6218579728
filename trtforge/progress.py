"""Progress of long stages on stderr: module, stage, elapsed.

On a terminal one line is rewritten in place twice a second (`[trtforge] vit: build 12.5s`); in CI
(stderr not a TTY) each stage writes one plain line when it starts and one when it ends, so a log
shows what ran and how long without carriage-return noise. Stages answered from the cache print
nothing: a no-op build stays silent apart from its status table."""

from __future__ import annotations

import io
import os
import threading
import time
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
        self._current: tuple[str, str, float] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._phase = ""
        global _ACTIVE
        _ACTIVE = self if enabled else None

    def start(self, module: str, stage: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._current = (module, stage, time.perf_counter())
            self._phase = ""
        if self.tty:
            if self._thread is None:
                self._thread = threading.Thread(target=self._tick, name="trtforge-progress", daemon=True)
                self._thread.start()
        else:
            self._line(f"[trtforge] {module}: {stage} ...")

    def done(self, module: str, stage: str, seconds: float) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._current = None
            if self.tty:
                self.stream.write("\r\033[K")
        self._line(f"[trtforge] {module}: {stage} done in {seconds:.1f}s")

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
                module, stage, t0 = self._current
                phase = f" ({self._phase})" if self._phase else ""
                self.stream.write(f"\r\033[K[trtforge] {module}: {stage} {time.perf_counter() - t0:.1f}s{phase}")
                self.stream.flush()
