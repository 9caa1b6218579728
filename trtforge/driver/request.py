"""What one build is asked to do, built once (by the CLI from its options, or by `trtforge.build`
from its keyword arguments) and passed whole through the driver. Every option is a field here,
with its default; the public `trtforge.build` takes the same names (a test holds them equal)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from trtforge.driver.stages import STAGE_NAMES
from trtforge.errors import TrtforgeError

SHARED_STAGES = ("export", "graph_passes", "precision_rules")  # no target reads them: build --until


@dataclass(frozen=True)
class BuildRequest:
    """`modules`/`targets`: the names to build (all when empty). `backend`: "tensorrt" or
    "tensorrt-rtx" over the manifest's. `cache_dir`/`output_dir`: over the manifest's (relative
    to the current folder). `jobs`: modules built at once. `require_engine_check`: a module whose
    engine cannot be run here fails. `require_target`: a target this machine cannot build fails
    (exit 3) instead of being skipped. `allow_foreign_files`: keep files in engines/ that trtforge
    did not write. `force_from`: a stage to re-run from (and every later one). `remote`: use the
    [cache] remote ($TRTFORGE_REMOTE_CACHE); `remote_read_only`: download only;
    `require_remote`: a failing remote is an error, not a note. `from_cache`: assemble engines/
    from the cache and run nothing. `max_memory`: each stage's memory budget (bytes or "16G").
    `until`: run only the stages every target shares, up to this one, and publish nothing.
    `overlap`: run verify's ONNX check while the engine builds, where the machine has the cores
    and the memory for both (driver/overlap.py); off by default: it raises the peak RSS."""

    modules: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    backend: str | None = None
    cache_dir: str | Path | None = None
    output_dir: str | Path | None = None
    jobs: int = 1
    require_engine_check: bool = False
    require_target: bool = False
    allow_foreign_files: bool = False
    force_from: str | None = None
    remote: bool = True
    remote_read_only: bool = False
    require_remote: bool = False
    from_cache: bool = False
    max_memory: int | str | None = None
    until: str | None = None
    overlap: bool = False

    def __post_init__(self) -> None:
        # a generator or list becomes a tuple: the request is read several times and is hashable
        object.__setattr__(self, "modules", tuple(self.modules))
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.force_from is not None and self.force_from not in STAGE_NAMES:
            raise TrtforgeError(
                f"no stage '{self.force_from}'", where="force_from", hint=f"stages: {', '.join(STAGE_NAMES)}"
            )
        if self.until is not None and (self.until not in SHARED_STAGES or self.from_cache or self.targets):
            raise TrtforgeError(
                f"--until {self.until}: only the stages every target shares ({', '.join(SHARED_STAGES)}), "
                "without --target or --from-cache",
                where="--until",
                hint="build a target's engines with --target NAME",
            )

    @property
    def partial(self) -> bool:
        """Whether this run builds part of the manifest: the reports keep what it did not build
        and engines/ is not pruned to the manifest."""
        return bool(self.modules) or bool(self.targets) or self.until is not None


FIELDS = tuple(f.name for f in fields(BuildRequest))
