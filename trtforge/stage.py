"""What every stage shares: frozen settings, key material, and a `run` that imports heavy tools late.

A stage never imports another stage. The driver (`trtforge.pipeline`) alone knows their order.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from trtforge.manifest import ModuleSpec


def tool_versions(*dists: str) -> dict:
    """Installed distribution versions, read from metadata (no import of the tool itself)."""
    return {d: _version(d) for d in dists}


@functools.cache
def _version(dist: str) -> str | None:
    # once per process: each lookup parses a METADATA file (~0.5 ms), and a no-op build of three
    # modules asks for the same dozen distributions sixty times
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def capture_output(log_path: Path):
    """Everything the stage prints into `log_path`: Python's sys.stdout/sys.stderr and the
    process's file descriptors 1 and 2, so a factory's os.write(1, ...), a C extension's printf
    or a subprocess it starts cannot reach the terminal past --quiet or --json."""
    with open(log_path, "a", buffering=1) as log:
        _flush_all()
        saved = (os.dup(1), os.dup(2))
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield log
        finally:
            _flush_all()  # what C stdio buffered goes to the log, not to the restored terminal
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _flush_all() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


@dataclass(frozen=True)
class StageContext:
    """What a stage's run may see besides its inputs: the module, the manifest root, the log."""

    module: ModuleSpec
    root: Path
    inputs: dict = field(default_factory=dict)  # upstream stage name -> folder of its outputs
    upstream_meta: dict = field(default_factory=dict)  # upstream stage name -> its record meta
    timing_cache: Path | None = None  # build: the target's newest timing cache, to start from


class Stage(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...  # salt: bump when the stage's output for the same key would change

    def key_material(self, module: ModuleSpec, root: Path) -> dict: ...

    def run(self, ctx: StageContext, workdir: Path) -> dict: ...
