"""What the `trtforge` command prints: with `--json`, exactly one JSON document on stdout.

Libraries print to stdout on their own: polygraphy's logger (`[W] 'colored' module is not
installed`, `[I] Loading bytes from ...`) and TensorRT's, through it, the moment an engine is
loaded, before any CUDA call; a factory's print, a C extension's printf. So under `--json` the
process's file descriptor 1 points at stderr from the moment the flag is parsed (stage children
forked later inherit it), and the document alone goes to the real stdout, once, at the end: on
success, on a verification failure, on a user error (with `error`), on an interrupt or a bug.

Every reporting command's document has one shape: `ok`, `exit_code`, `modules` (a list, one entry
per module the command reports on), then the command's own keys. Every command ends through
`finish` (the document, the failure raised) and every error is printed by `show`: one path each.
"""

from __future__ import annotations

import json
import os
import sys

import click

from trtforge.errors import TrtforgeError


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


def show(e: TrtforgeError, verbose: bool) -> None:
    """The error's one line on stderr, once (`trtforge: error: STAGE: ...`), its cause too with -v;
    the line becomes the JSON document's `error`. An error whose class has no label printed
    nothing: the command's own output said it."""
    if getattr(e, "_shown", False) or e.label is None:
        return
    e._shown = True  # type: ignore[attr-defined]
    stage = f"{e.stage}: " if e.stage != TrtforgeError.stage else ""  # which stage failed
    line = f"trtforge: {e.label}: {stage}{e.one_line()}"
    click.echo(line, err=True)
    if e.label == TrtforgeError.label:
        JSON_OUT.error = line
    if verbose:
        from trtforge.errors import cause_text

        # a cause raised in a stage's child process arrives as text (errors.__reduce__)
        text = cause_text(e.__cause__) if e.__cause__ is not None else getattr(e, "cause_text", None)
        if text:
            click.echo(f"  cause: {text}", err=True)


def finish(verbose: bool, modules: list, failure: TrtforgeError | None = None, **extra) -> None:
    """Every command's end, one path: the failure's line (unless shown already), under --json the
    one document (its exit code the failure's class's, its `error` the last error line), then the
    failure raised for the group (cli/__init__.py) to exit with."""
    if failure is not None:
        show(failure, verbose)
    if JSON_OUT.active:
        code = 0 if failure is None else failure.exit_code
        error = {"error": JSON_OUT.error} if failure is not None and JSON_OUT.error else {}
        JSON_OUT.send(document(code, modules, **extra, **error))
    if failure is not None:
        raise failure
