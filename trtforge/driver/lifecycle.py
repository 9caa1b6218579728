"""The life of one module: its stages in order, the verdict, the engine check policy, publish or
withdraw, and one retry when a cached blob turns out corrupt. Nothing else runs this sequence:
`trtforge build` (one process or N workers), `debug` (a partial run) and the Python API call it.
"""

from __future__ import annotations

from trtforge.artifacts import VerifyMeta, meta
from trtforge.cache import Record, Store
from trtforge.cache.store import CorruptEntry
from trtforge.driver import release
from trtforge.driver.context import RunContext
from trtforge.driver.execute import run_stage
from trtforge.driver.overlap import Around, plan_ahead
from trtforge.driver.publish import publish
from trtforge.driver.request import BuildRequest
from trtforge.driver.results import ModuleResult
from trtforge.driver.stages import Step, later_or_same, stage_table
from trtforge.errors import InternalError, PublishError, TrtforgeError, VerifyError
from trtforge.manifest import Manifest, ModuleSpec
from trtforge.manifest.targets import TargetSpec, TargetUnavailable, for_target, unavailable
from trtforge.processes import interrupts
from trtforge.processes.progress import OnTarget
from trtforge.stage import as_stage


def run_stages(
    ctx: RunContext,
    module: ModuleSpec,
    target: TargetSpec | None = None,
    until: str | None = None,
    table: tuple[Step, ...] | None = None,
) -> ModuleResult:
    """The module's stages in order (up to `until`), from the cache or run now; the request's
    `force_from` (a stage name) re-runs that stage and every later one. Stops at the first failing
    stage. `table` replaces the stage table (the driver's unit tests run it on fake stages);
    `target` (a [targets.NAME]) builds for that target: the result is named "<target>/<module>"."""
    result = ModuleResult(
        module.name if target is None else f"{target.name}/{module.name}",
        target=None if target is None else target.name,
    )
    module = for_target(module, target)
    if ctx.progress is not None and target is not None:  # "[3/8] ampere_ada/unet build ..."
        ctx = ctx.with_progress(OnTarget(ctx.progress, target.name))
    force_from = ctx.request.force_from
    steps = stage_table(ctx.request.backend, until, target) if table is None else _declared(table)
    prepared: dict | None = None  # what the previous stage's ahead run computed for this one
    for i, (stage, reads) in enumerate(steps):
        force = force_from is not None and later_or_same(stage.name, force_from)
        ahead = None
        try:
            # a named target's build and verify are keyed on the machine that built them
            if ctx.assembling and target is not None and stage.name in release.ASSEMBLED:
                result.records[stage.name] = release.assemble(
                    ctx.store, module, target, result.records, stage.name, result.stages[stage.name]
                )
                continue
            upstream = {d: result.records[d] for d in reads}
            # the next stage's work that does not need this one's output runs beside it
            ahead = plan_ahead(ctx, module, steps[i], steps[i + 1] if i + 1 < len(steps) else None, result.records)
            result.records[stage.name] = run_stage(
                ctx, stage, module, upstream, result, force, around=Around(prepared, ahead)
            )
            prepared = ahead.collect() if ahead is not None else None
        except TrtforgeError as e:
            e.module = e.module or module.name
            result.fail(stage.name, e)
            break
        finally:
            if ahead is not None:
                ahead.stop()  # a no-op once collected
    return result


def _declared(table: tuple[Step, ...]) -> tuple[Step, ...]:
    """A table given by the caller (the driver's unit tests: fake stages), each stage as a Stage."""
    return tuple(Step(as_stage(step.stage), step.reads) for step in table)


def judge(result: ModuleResult, require_engine_check: bool = False) -> ModuleResult:
    """The verify stage's verdict as the module's error (exit 3, not published); with
    `require_engine_check`, an engine that could not run here fails too."""
    if not result.ok or "verify" not in result.records:
        return result
    verify = meta(result.records["verify"], VerifyMeta)
    if not verify["passed"]:
        blame = verify["blame"]
        if blame is None:
            raise InternalError("verify failed and blamed no stage")
        reason = verify["checks"][blame]["reason"]
        result.fail(
            "verify",
            VerifyError(
                f"verification failed at stage '{blame}': {reason}", module=result.name, hint="engine not published"
            ),
            reason=f"failed at {blame}: {reason}",
        )
        return result
    engine = verify["checks"]["engine"]
    if require_engine_check and engine["status"] != "ok":
        reason = engine.get("reason") or engine["status"]
        result.fail(
            "verify",
            VerifyError(
                f"engine check required but {reason}",
                module=result.name,
                hint="run on a GPU the engine supports, or drop --require-engine-check; engine not published",
            ),
            reason=f"engine check required: {reason}",
        )
    return result


def build_module(
    store: Store,
    manifest: Manifest,
    module: ModuleSpec,
    *,
    force_from: str | None = None,
    require_engine_check: bool = False,
    table: tuple[Step, ...] | None = None,
) -> ModuleResult:
    """Every stage of one module (default target) and the verdict, nothing published: a module
    built on its own, outside a `build` (tests, debugging)."""
    request = BuildRequest(force_from=force_from, require_engine_check=require_engine_check)
    return verdict(RunContext(store, manifest, request), module, table=table)


def verdict(
    ctx: RunContext, module: ModuleSpec, target: TargetSpec | None = None, table: tuple[Step, ...] | None = None
) -> ModuleResult:
    """Every stage of one module (for one target) and the verdict, nothing published."""
    return judge(run_stages(ctx, module, target, table=table), ctx.request.require_engine_check)


def build_and_publish(ctx: RunContext, module: ModuleSpec, target: TargetSpec | None = None) -> ModuleResult:
    """Build, judge, then publish the module (or withdraw what it had published when it failed).
    A blob found corrupt on read, while building or while copying out, is forgotten and the
    module built once more."""
    store, manifest = ctx.store, ctx.manifest
    notes: list[str] = []
    # the gc lock shared for the whole module: `cache gc` waits until every record and view this
    # build reads (its own earlier stages, then publish) is no longer needed
    with store.gc_lock(exclusive=False):
        for attempt in range(2):
            try:
                result = verdict(ctx, module, target)
                result.notes[:0] = notes
                interrupts.check()  # a signal met anywhere before: nothing is published
                if result.ok and any(module.name in p.modules for p in manifest.pipelines):
                    result.deferred = True  # published after its pipelines pass (pipelines/drive.py)
                else:
                    result = _publish(store, manifest, module, result)
                    pin_published(store, module.name, target, result)
                if target is not None and not ctx.assembling and result.published:
                    release.remember(store, for_target(module, target), target, result)
                if store.remote is not None:
                    result.remote = store.remote.take_summary()
                return result
            except CorruptEntry as e:
                if attempt:
                    raise
                store.forget(e.key)
                notes.append(f"corrupt cache entry forgotten and rebuilt: {e}")
                ctx = ctx.without_force()  # the rebuild takes what is still good from the cache
    raise InternalError("unreachable: the second attempt returns or raises")


def _publish(store: Store, manifest: Manifest, module: ModuleSpec, result: ModuleResult) -> ModuleResult:
    try:  # a failed module is withdrawn: engines/ never keeps what the manifest no longer verifies
        # a signal waits for the few renames to finish (raised on leaving): engine and sidecar agree
        with interrupts.deferred():
            result.published = publish(store, result, manifest.output_dir, module)
    except PublishError as e:  # this module only: the others still build and report
        if result.error is None:
            result.error = e
        else:  # the module's own failure stays the one reported
            result.notes.append(f"could not withdraw its previous files: {e.one_line()}")
    return result


def pin_published(store: Store, module: str, target: TargetSpec | None, result: ModuleResult) -> None:
    """Pin the records behind what is now published for (module, target) in the cache, or unpin
    them when the module was withdrawn: `cache gc` keeps the pinned ones, whichever target the
    last build built. A pin that cannot be written (a full disk) costs only that guarantee."""
    name = "default" if target is None else target.name
    try:
        if result.published:
            store.pin(module, name, {s: r.key for s, r in result.records.items()})
        else:
            store.unpin(module, name)
    except OSError as e:
        result.notes.append(f"cache: could not record what is published ({e.strerror}); `cache gc` may drop it")


def records_until(store: Store, manifest: Manifest, module: ModuleSpec, until: str) -> dict[str, Record]:
    """The records of the module's stages up to `until` (a partial run, for `debug`); the first
    failing stage's error is raised. The caller holds the store's gc lock (shared) while it reads
    the records' views."""
    result = run_stages(RunContext(store, manifest), module, until=until)
    if result.error is not None:
        raise result.error
    return result.records


def build_targets(ctx: RunContext, module: ModuleSpec) -> list[ModuleResult]:
    """One module for each of the request's targets: export, passes and precision come from the
    cache after the first target (their keys do not involve a target); build, verify and publish
    per target. A manifest without targets builds the default one, as before targets existed. A
    target this machine cannot build is skipped (its published files, built elsewhere, stay), or
    with the request's `require_target` fails (exit 3)."""
    if not ctx.manifest.targets:
        return [build_and_publish(ctx, module)]
    results = []
    for target in ctx.targets:
        why = None if ctx.assembling else unavailable(target)  # assembling builds nothing
        if why is None:
            results.append(build_and_publish(ctx, module, target))
            continue
        result = ModuleResult(
            f"{target.name}/{module.name}",
            target=target.name,
            skipped=why,
            notes=[f"skipped here: {why} (target '{target.name}')"],
        )
        for status in result.stages.values():
            status.state, status.reason = "skipped", f"skipped here: {why}"
        if ctx.request.require_target:
            result.error = TargetUnavailable(
                f"target '{target.name}' cannot be built here: it {why}",
                module=module.name,
                hint="run on a machine with that GPU, or drop --require-target to skip it",
            )
        results.append(result)
    return results


def prepare_module(ctx: RunContext, module: ModuleSpec) -> ModuleResult:
    """The stages no target reads (export up to the request's `until`), stored and uploaded,
    nothing published: a farm's job per module (`build --until precision_rules`), before its
    module x target jobs."""
    with ctx.store.gc_lock(exclusive=False):
        result = run_stages(ctx, module, until=ctx.request.until)
    if ctx.store.remote is not None:
        result.remote = ctx.store.remote.take_summary()
    return result
