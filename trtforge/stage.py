"""What every stage shares: frozen settings, key material, and a `run` that imports heavy tools late.

A stage never imports another stage. The driver alone knows their order (`trtforge.driver.stages`,
the stage table: each stage and the upstream stages it reads); a stage sees those upstream
artifacts as `ctx.inputs.<stage>` (StageInputs), and reading one it did not declare is a bug.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtforge.errors import InternalError
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
            if stream is not None:  # no console: pythonw, a daemon
                stream.flush()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


@dataclass(frozen=True)
class Upstream:
    """One upstream stage's artifacts as a later stage reads them: the folder of its outputs and its
    cache record's metadata (artifacts.meta(upstream, BuildMeta) types it)."""

    folder: Path
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StageInputs:
    """The upstream stages' artifacts a stage declared it reads (the stage table's `reads`), one
    attribute per stage; iterating gives their names in the declared order (verify attributes a
    failure in it)."""

    given: dict[str, Upstream] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.given)

    def __contains__(self, stage: object) -> bool:
        """Whether the stage declared it reads `stage` (a stage that can do without it asks)."""
        return stage in self.given

    @property
    def export(self) -> Upstream:
        return self._read("export")

    @property
    def graph_passes(self) -> Upstream:
        return self._read("graph_passes")

    @property
    def precision_rules(self) -> Upstream:
        return self._read("precision_rules")

    @property
    def build(self) -> Upstream:
        return self._read("build")

    def _read(self, stage: str) -> Upstream:
        found = self.given.get(stage)
        if found is None:  # the stage table and the stage disagree: a bug, with its traceback
            raise InternalError(f"a stage read '{stage}' without declaring it (driver/stages.py: reads)")
        return found


@dataclass(frozen=True)
class StageContext:
    """What a stage's run may see besides its settings: the module, the manifest root, the
    artifacts of the upstream stages it reads, the timing cache to start from."""

    module: ModuleSpec
    root: Path
    inputs: StageInputs = field(default_factory=StageInputs)
    timing_cache: Path | None = None  # build: the target's newest timing cache, to start from
    # what the stage's `ahead` work computed while the stage before it ran (None: not run, or
    # stopped to keep the memory budget: the stage does that work itself)
    prepared: dict | None = None


class Stage(ABC):
    """The contract between a stage and the driver. A stage is a frozen dataclass of its settings
    with a `name` and a `version` (the salt: bump it when the output for the same key would
    change); `key_material` is everything besides its inputs' digests that can change its bytes;
    `run` writes its outputs into `workdir` and returns its metadata (in its own process). The two
    optional capabilities have defaults here, so the driver asks every stage the same way."""

    @property
    @abstractmethod
    def name(self) -> str: ...

    @property
    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def key_material(self, module: ModuleSpec, root: Path) -> dict: ...

    @abstractmethod
    def run(self, ctx: StageContext, workdir: Path) -> dict: ...

    def tracks_imports(self, module: ModuleSpec) -> bool:
        """Whether the key covers the code the run loaded (export: the factory's imports;
        graph_passes: a user pass's): the driver records the files the run loaded."""
        return False

    def timing_target(self, module: ModuleSpec) -> str | None:
        """The name a timing cache is kept under for this module (build, TensorRT targets); None:
        the stage keeps none."""
        return None

    def ahead(self) -> Ahead | None:
        """Work of this stage that reads only some of its inputs, so it can run while the stage
        before it runs (verify's ONNX check during the engine build); None: none."""
        return None


@dataclass(frozen=True)
class Ahead:
    """`run(ctx)` -> what the stage finds as `ctx.prepared`; `ctx.inputs` holds only `reads`. It
    must compute exactly what the stage would (the same function on the same inputs): the stage's
    record is the same whether it ran ahead or not."""

    reads: tuple[str, ...]
    run: Callable[[StageContext], dict]


def as_stage(stage: object) -> Stage:
    """`stage` itself when it is a Stage; an object that has only the required members (`name`,
    `version`, `key_material`, `run`: the driver's unit tests' fake stages) declares neither
    optional capability, and is wrapped so the driver asks it like any other."""
    return stage if isinstance(stage, Stage) else _Plain(stage)


@dataclass(frozen=True)
class _Plain(Stage):
    inner: Any

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def version(self) -> str:
        return self.inner.version

    def key_material(self, module: ModuleSpec, root: Path) -> dict:
        return self.inner.key_material(module, root)

    def run(self, ctx: StageContext, workdir: Path) -> dict:
        return self.inner.run(ctx, workdir)
