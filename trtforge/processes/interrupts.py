"""SIGINT and SIGTERM end a run promptly, in every stage, with nothing half-built kept.

A Python exception raised by a signal handler is lost when the handler happens to run inside a
native library's callback: TensorRT's builder calls its logger and progress monitor from C++ and
swallows what they raise ("[ERROR] Exception caught in log(): KeyboardInterrupt"), and the build
went on and was published. So the handler first records the signal in a flag, and raises only where
raising is safe. Inside native code (`deferred()`), it only records: the builder's progress monitor
reads the flag and cancels the build (IProgressMonitor.step_complete returning False), and
`check()` after the native call raises. The driver calls `check()` again before storing a result
and before publishing, so a signal that arrived at any point stops the run before anything is kept.
"""

from __future__ import annotations

import contextlib
import signal

EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
_received: int | None = None
_depth = 0  # > 0 while in native code that swallows exceptions raised in its callbacks


class Interrupted(KeyboardInterrupt):
    """The run was interrupted by `signum`; the CLI exits 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + self.signum)

    def __reduce__(self):  # `build --jobs` workers send it back to the CLI process
        return (Interrupted, (self.signum,))


def _handler(signum, frame) -> None:
    global _received
    _received = _received or signum
    if _depth == 0:
        raise Interrupted(signum)


def install() -> None:
    """Handle SIGINT and SIGTERM in this process (the CLI and each `--jobs` worker)."""
    for sig in EXIT_CODES:
        signal.signal(sig, _handler)


def received() -> int | None:
    return _received


def check() -> None:
    """Raise if a signal arrived, even one whose exception a native callback swallowed."""
    if _received is not None:
        raise Interrupted(_received)


@contextlib.contextmanager
def deferred():
    """Signals are recorded, not raised, inside this block; raised on leaving it."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _received is not None:
            raise Interrupted(_received)  # also in place of the error a cancelled build raises
