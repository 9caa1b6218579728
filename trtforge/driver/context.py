"""What travels with a build request through the driver: the request itself, the cache it reads
and writes, the manifest (its output folder already resolved), where progress goes, and the
targets it names, resolved once. Every lifecycle function takes one of these instead of the
options one by one; a --jobs worker rebuilds it from a `WorkerJob`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trtforge.cache import Store
from trtforge.driver.request import BuildRequest
from trtforge.manifest import Manifest, load_manifest
from trtforge.manifest.targets import TargetSpec, select


@dataclass(frozen=True)
class RunContext:
    """`progress`: a trtforge.processes.progress.Progress (or anything with its start/done), None for none.
    `targets`: the manifest's targets that `request.targets` names (every one when it names none)."""

    store: Store
    manifest: Manifest
    request: BuildRequest = field(default_factory=BuildRequest)
    progress: Any = None
    targets: tuple[TargetSpec, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", select(self.manifest.targets, self.request.targets))

    @property
    def assembling(self) -> bool:
        """`build --from-cache`: nothing runs; a miss is NotBuiltYet (driver/release.py)."""
        return self.request.from_cache

    def without_force(self) -> RunContext:
        """The same run, taking what is still good from the cache (a rebuild after a corrupt blob)."""
        return replace(self, request=replace(self.request, force_from=None))

    def with_progress(self, progress: Any) -> RunContext:
        return replace(self, progress=progress)


@dataclass(frozen=True)
class WorkerJob:
    """A RunContext as a --jobs worker (a spawned process) rebuilds it: plain, picklable values."""

    manifest_path: str
    output_dir: str
    cache_root: str
    shared: tuple[Path, ...]
    remote: Any  # the remote's config (cache.remote.Remote(config)), None without one
    request: BuildRequest

    @classmethod
    def of(cls, ctx: RunContext) -> WorkerJob:
        store = ctx.store
        remote = None if store.remote is None else store.remote.config
        return cls(
            str(ctx.manifest.path), str(ctx.manifest.output_dir), str(store.root), store.shared, remote, ctx.request
        )

    def context(self, progress: Any = None) -> RunContext:
        from trtforge.cache.remote import Remote

        manifest = replace(load_manifest(self.manifest_path), output_dir=Path(self.output_dir))  # as resolved
        remote = None if self.remote is None else Remote(self.remote)
        store = Store(Path(self.cache_root), shared=self.shared, remote=remote)
        return RunContext(store, manifest, self.request, progress)
