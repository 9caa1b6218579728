"""What the `trtforge` command prints: with `--json`, exactly one JSON document on stdout.

Libraries print to stdout on their own: polygraphy's logger (`[W] 'colored' module is not
installed`, `[I] Loading bytes from ...`) and TensorRT's, through it, the moment an engine is
loaded, before any CUDA call; a factory's print, a C extension's printf. So under `--json` the
process's file descriptor 1 points at stderr from the moment the flag is parsed (stage children
forked later inherit it), and the document alone goes to the real stdout, once, at the end: on
success, on a verification failure, on a user error (with `error`), on an interrupt or a bug.

Every reporting command's document has one shape: `ok`, `exit_code`, `modules` (a list, one entry
per module the command reports on), then the command's own keys.
"""

from __future__ import annotations

import json
import os
import sys

# exit status of `trtforge explain --check` when something would be built or rebuilt (1 is a bug)
EXIT_WOULD_REBUILD = 4


def document(exit_code: int, modules: list, **extra) -> dict:
    return {"ok": exit_code == 0, "exit_code": exit_code, "modules": modules, **extra}


class JsonStdout:
    """fd 1 redirected to stderr while a `--json` command runs; `send` writes the document to the
    real stdout (once); `finish` writes a minimal one when the command ended without sending."""

    def __init__(self) -> None:
        self._fd: int | None = None  # the real stdout, while redirected
        self.sent = False
        self.error: str | None = None  # the last error line printed, for a document not sent yet

    @property
    def active(self) -> bool:
        return self._fd is not None

    def start(self) -> None:
        if self._fd is not None:
            return
        _flush()
        self._fd = os.dup(1)
        os.dup2(2, 1)

    def send(self, doc: dict) -> None:
        if self._fd is None or self.sent:
            return
        _flush()  # what Python buffered for "stdout" goes to stderr, before the document
        data = (json.dumps(doc, indent=1, default=str) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.sent = True

    def finish(self, exit_code: int, error: str | None = None) -> None:
        """Send a document if none was (a bug, an interrupt, a usage error), then restore fd 1."""
        if self._fd is None:
            return
        if not self.sent:
            error = error or self.error
            self.send(document(exit_code, [], **({"error": error} if error else {})))
        _flush()
        os.dup2(self._fd, 1)
        os.close(self._fd)
        self._fd = None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    try:  # what C stdio buffered (a library's printf) leaves before fd 1 changes
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


JSON_OUT = JsonStdout()
