"""What every stage shares: frozen settings, key material, and a `run` that imports heavy tools late.

A stage never imports another stage. The driver (`trtforge.pipeline`) alone knows their order.
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from trtforge.manifest import ModuleSpec


def tool_versions(*dists: str) -> dict:
    """Installed distribution versions, read from metadata (no import of the tool itself)."""
    return {d: _version(d) for d in dists}


@functools.lru_cache(maxsize=None)
def _version(dist: str) -> str | None:
    # once per process: each lookup parses a METADATA file (~0.5 ms), and a no-op build of three
    # modules asks for the same dozen distributions sixty times
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class StageContext:
    """What a stage's run may see besides its inputs: the module, the manifest root, the log."""

    module: ModuleSpec
    root: Path
    inputs: dict = field(default_factory=dict)  # upstream stage name -> folder of its outputs
    upstream_meta: dict = field(default_factory=dict)  # upstream stage name -> its record meta


class Stage(Protocol):
    name: str
    version: str  # salt: bump when the stage's output for the same key would change

    def key_material(self, module: ModuleSpec, root: Path) -> dict: ...

    def run(self, ctx: StageContext, workdir: Path) -> dict: ...
