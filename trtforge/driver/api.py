"""The Python API, which the CLI itself calls: load a manifest, build (and publish) its modules,
explain what would rebuild, run a module up to a stage. The CLI only parses arguments, calls these
and maps errors to exit codes.

    import trtforge
    outcome = trtforge.build("engines.toml", modules=["vit"])
    outcome.ok, outcome.report, [r.stages["build"].state for r in outcome.results]
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtforge.cache import Record, Store
from trtforge.driver.context import RunContext
from trtforge.driver.explain import Verdict
from trtforge.driver.request import BuildRequest
from trtforge.driver.results import ModuleResult
from trtforge.errors import TrtforgeError
from trtforge.manifest import DEFAULT_RULES, Manifest, ModuleSpec, load_manifest, with_output_dir

if TYPE_CHECKING:
    from trtforge.driver.inspect import Inspection

ENV_CACHE = "TRTFORGE_CACHE_DIR"
ENV_SHARED = "TRTFORGE_SHARED_CACHE"


def open_store(manifest: Manifest, cache_dir: str | Path | None = None, writable: bool = True, remote=None) -> Store:
    """The cache: `cache_dir`, else $TRTFORGE_CACHE_DIR, else the manifest's cache_dir; read-only
    shared caches from $TRTFORGE_SHARED_CACHE (os.pathsep-separated); `remote` (a
    cache.remote.Remote) asked after them (docs/farm.md)."""
    root = Path(cache_dir or os.environ.get(ENV_CACHE) or manifest.cache_dir)
    shared = tuple(Path(p) for p in os.environ.get(ENV_SHARED, "").split(os.pathsep) if p)
    return Store(root, shared=shared, writable=writable, remote=remote)


def _manifest(manifest: Manifest | str | Path) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else load_manifest(manifest)


def selected(manifest: Manifest, modules: Iterable[str] = ()) -> list[ModuleSpec]:
    names = list(modules)
    return [manifest.module(m) for m in names] if names else list(manifest.modules)


@dataclass
class BuildOutcome:
    """What `build` did: one result per module (manifest order), the report written, the modules
    withdrawn because the manifest no longer names them, and warnings a user must read."""

    results: list[ModuleResult]
    report: Path
    removed: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (module, text)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # about the run as a whole (e.g. --jobs capped)
    remote_failure: str | None = None  # the remote cache failed; the build ran locally (exit 2)
    pipelines: list = field(default_factory=list)  # trtforge.driver.pipelines.PipelineResult per [pipelines.NAME]

    @property
    def errors(self) -> list[TrtforgeError]:
        return [r.error for r in self.results if r.error is not None]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return max((e.exit_code for e in self.errors), default=2 if self.remote_failure else 0)


def build(
    manifest: Manifest | str | Path = "engines.toml",
    request: BuildRequest | None = None,
    *,
    progress: Any = None,
    on_result: Callable[[ModuleResult], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> BuildOutcome:
    """Export, rewrite, keep FP32 islands, build, verify and publish what `request` asks
    (driver/request.py: every module and target by default). A user mistake found before any
    stage runs raises a TrtforgeError; a module that fails does not stop the others: its error is
    on its result. `on_result` sees each module's result as soon as it is done, `on_note` each note
    about the run as soon as it is known. A remote cache that fails is `remote_failure` (the build
    ran locally), or a CacheError with `request.require_remote`. With `request.from_cache` what no
    runner has stored yet fails its module with NotBuiltYet (exit 3); a stage over
    `request.max_memory` is stopped (StageOverMemory, exit 2). `request.until` runs the modules up
    to that stage and stores (uploads) them, publishing nothing: a farm's per-module job
    (`trtforge plan`, driver/plan.py)."""
    from trtforge.cache.remote import open_remote
    from trtforge.driver.explain import engines_to_build
    from trtforge.driver.jobs import build_modules, effective_jobs
    from trtforge.driver.preflight import preflight
    from trtforge.driver.publish import prune, published_names
    from trtforge.driver.report import RunFacts, module_warnings, write_reports
    from trtforge.manifest.targets import select

    request = request if request is not None else BuildRequest()
    t0, started = time.perf_counter(), time.time()
    _set_memory_budget(request.max_memory)
    key = _signing_key()  # a key that cannot be read fails now, before anything is built
    manifest = _manifest(manifest)
    if request.output_dir is not None:
        manifest = with_output_dir(manifest, request.output_dir)
    chosen = selected(manifest, request.modules)
    select(manifest.targets, request.targets)  # an unknown name fails before the cache is opened
    store = open_store(
        manifest,
        request.cache_dir,
        remote=open_remote(
            manifest.cache, read_only=request.remote_read_only, required=request.require_remote, use=request.remote
        ),
    )
    preflight(manifest, chosen, request.backend, request.allow_foreign_files)
    jobs, note = effective_jobs(request.jobs, len(chosen))
    if request.from_cache:
        jobs, note = 1, None  # nothing runs: one process downloads and publishes
    request = replace(request, jobs=jobs)
    ctx = RunContext(store, manifest, request, progress)
    notes = [note] if note else []
    for text in notes:
        if on_note is not None:
            on_note(text)
    if progress is not None and hasattr(progress, "expect"):  # the count's denominator: "[3/8]"
        progress.expect(
            lambda: engines_to_build(ctx, chosen)
        )  # asked when the first stage runs  # asked when the first stage runs
    results = []
    if request.until is not None:
        from trtforge.driver.lifecycle import prepare_module

        runs = (prepare_module(ctx, m) for m in chosen)
    else:
        runs = build_modules(ctx, chosen)
    for result in runs:
        results.append(result)
        if on_result is not None:
            on_result(result)
    partial = request.partial
    pipelines = []
    if request.until is None and (
        manifest.pipelines or not partial
    ):  # after every module is verified: withdraws what a failing one names
        from trtforge.driver.pipelines import check_all

        with store.gc_lock(exclusive=False):  # it reads records' views and publishes from them
            pipelines = check_all(ctx, results)
    # a full build: engines/ holds exactly the manifest's modules
    removed = [] if partial else prune(manifest.output_dir, published_names(manifest))
    for name in removed:  # withdrawn: `cache gc` may drop its records again
        target, _, module = name.rpartition("/")
        with contextlib.suppress(OSError):
            store.unpin(module, target or "default")
    stale = _mark_stale(store, manifest, results)
    facts = RunFacts(
        partial, request.backend, started, time.perf_counter() - t0, [p.as_json() for p in pipelines], stale
    )
    report = write_reports(results, manifest, facts)
    if key is not None:
        from trtforge.engines_folder.signing import sign_folder

        sign_folder(manifest.output_dir, key)
    specs = {m.name: m for m in chosen}
    # export and precision rules run once per module, not per target: each warning once per module
    warnings = list(
        dict.fromkeys(
            (r.module, w)
            for r in results
            for w in module_warnings(r, rules_written=specs[r.module].precision_rules != DEFAULT_RULES)
        )
    )
    warnings += [(name, why) for name, why in stale.items()]
    failures = [r.remote.get("failure") for r in results if r.remote.get("failure")]  # --jobs: per worker
    return BuildOutcome(
        results,
        report,
        removed,
        warnings,
        time.perf_counter() - t0,
        notes,
        remote_failure=failures[0] if failures else None,
        pipelines=pipelines,
    )


def _mark_stale(store: Store, manifest: Manifest, results: list[ModuleResult]) -> dict[str, str]:
    """Mark every published entry this run did not publish whose upstream keys moved on (a
    --target or --module subset); {entry: reason} of those now stale (driver/stale.py)."""
    from trtforge.driver.publish import mark_stale, read_sidecar
    from trtforge.driver.stale import find_stale
    from trtforge.engines_folder import index as engines_index

    out = manifest.output_dir
    index = engines_index.load(out)
    if index is None or not set(index["modules"]) - {r.name for r in results if r.published}:
        return {}  # a full build published everything: nothing to compare (the no-op build stays cheap)
    verdicts = find_stale(store, manifest, results, index, lambda name: read_sidecar(out, index, name))
    marked = mark_stale(out, verdicts)
    return {name: verdicts[name] for name in marked if verdicts.get(name)}


def _signing_key():
    """The Ed25519 key that signs engines/index.json ($TRTFORGE_SIGNING_KEY_FILE or
    $TRTFORGE_SIGNING_KEY; never the manifest), or None (cryptography is imported only then)."""
    from trtforge.engines_folder import signing

    return signing.signing_key() if signing.configured() else None


def _set_memory_budget(max_memory: int | str | None) -> None:
    """Each build sets the stages' memory budget afresh (None: the default), for its own stages
    and its --jobs workers."""
    from trtforge.cache.manage import parse_size
    from trtforge.processes import isolate

    isolate.MAX_MEMORY = parse_size(max_memory, "--max-memory") if isinstance(max_memory, str) else max_memory


def explain(
    manifest: Manifest | str | Path = "engines.toml",
    modules: Iterable[str] = (),
    *,
    backend: str | None = None,
    cache_dir: str | Path | None = None,
    targets: Iterable[str] = (),
) -> list[str]:
    """Per module (and target) and stage: up to date, or which key fields changed (a dry run)."""
    return [v.text for v in explain_verdicts(manifest, modules, backend=backend, cache_dir=cache_dir, targets=targets)]


def explain_verdicts(
    manifest: Manifest | str | Path = "engines.toml",
    modules: Iterable[str] = (),
    *,
    backend: str | None = None,
    cache_dir: str | Path | None = None,
    targets: Iterable[str] = (),
) -> list[Verdict]:
    """`explain` as Verdict objects (module, stage, state, text); `check_exit_code(verdicts)` is
    what `trtforge explain --check` exits with. With [targets.NAME] tables, every target (or
    those named in `targets`), under the keys the build computes for it."""
    from trtforge.driver.explain import explain_pipelines, explain_targets

    manifest = _manifest(manifest)
    store = open_store(manifest, cache_dir)
    records: dict[str, dict] = {}
    verdicts = explain_targets(store, manifest, selected(manifest, modules), backend, tuple(targets), records)
    return verdicts + explain_pipelines(store, manifest, records)


def debug_precision(
    module_name: str, manifest: Manifest | str | Path = "engines.toml", *, cache_dir: str | Path | None = None
):
    """The smallest FP32 islands that make the module pass the FP16-faithful check (the graph
    after graph_passes, before any island)."""
    from trtforge.driver.debug import debug_precision as search
    from trtforge.driver.lifecycle import records_until

    manifest = _manifest(manifest)
    module = manifest.module(module_name)
    store = open_store(manifest, cache_dir)
    with store.gc_lock(exclusive=False):  # like a build: `cache gc` waits until it is done
        records: dict[str, Record] = records_until(store, manifest, module, "graph_passes")
        return search(store.view(records["graph_passes"]), store.view(records["export"]), module.tolerance)


def inspect(
    target: str | Path,
    manifest: Manifest | str | Path = "engines.toml",
    *,
    cache_dir: str | Path | None = None,
    on_target: str | None = None,
) -> Inspection:
    """An engine file (its published sidecar, plus layers and rules from the cache where it still
    holds the build) or "module[:stage]" (the module's last record of that stage; build by
    default; `on_target`: the engine published for that [targets] target), as a
    trtforge.driver.inspect.Inspection (`render()` for text, `as_json()`)."""
    from trtforge.driver import inspect as insp

    path = Path(target)
    if path.is_file():
        return insp.inspect_engine(path, _engine_store(manifest, cache_dir))
    manifest = _manifest(manifest)
    store = open_store(manifest, cache_dir, writable=False)
    return insp.inspect_stage(store, manifest, str(target), on_target)


def _engine_store(manifest: Manifest | str | Path, cache_dir: str | Path | None) -> Store | None:
    """The cache an engine's records may be in: `cache_dir` / $TRTFORGE_CACHE_DIR, else the
    manifest's if there is one; None when there is none (the sidecar alone is described)."""
    root = cache_dir or os.environ.get(ENV_CACHE)
    if root is None:
        if not isinstance(manifest, Manifest) and not Path(manifest).is_file():
            return None
        root = _manifest(manifest).cache_dir
    return Store(Path(root), writable=False) if Path(root).is_dir() else None


def export_onnx(
    module_name: str,
    stage: str,
    out_dir: str | Path,
    manifest: Manifest | str | Path = "engines.toml",
    *,
    cache_dir: str | Path | None = None,
) -> list[Path]:
    """Copy the module's last `stage` ONNX (+ external data) out of the cache into `out_dir` as
    real, single-link files that onnx.load, polygraphy and Netron open; the paths written."""
    from trtforge.driver.copyout import export_onnx as copy_out

    manifest = _manifest(manifest)
    return copy_out(open_store(manifest, cache_dir), manifest, module_name, stage, Path(out_dir))


def plan(
    manifest: Manifest | str | Path = "engines.toml",
    modules: Iterable[str] = (),
    *,
    trtforge: str = "trtforge",
    manifest_arg: str | None = None,
    **options,
):
    """The build's jobs for a CI matrix, in the order they may run (driver/plan.py), leaving out
    what the cache (local, then the remote, records only: nothing is downloaded) already holds.
    `options`: the BuildRequest fields a plan reads (targets, backend, cache_dir, remote);
    `trtforge`: the command the jobs run; `manifest_arg`: the manifest as they name it."""
    from trtforge.cache.remote import open_remote
    from trtforge.driver.plan import plan as make_plan

    request = BuildRequest(modules=tuple(modules), **options)
    given = manifest
    manifest = _manifest(manifest)
    remote = open_remote(manifest.cache, read_only=True, use=request.remote)
    store = open_store(manifest, request.cache_dir, remote=remote)
    store.peek = True
    arg = manifest_arg or (str(given) if not isinstance(given, Manifest) else str(manifest.path))
    head = (*shlex.split(trtforge), "build", arg)
    extra = ("--require-remote",) if store.remote is not None else ()
    result = make_plan(RunContext(store, manifest, request), selected(manifest, request.modules), head, extra)
    if store.remote is not None and store.remote.failure:  # a plan made blind would rebuild everything
        from trtforge.cache.remote import HINT
        from trtforge.errors import CacheError

        raise CacheError(store.remote.failure, hint=HINT)
    return result
