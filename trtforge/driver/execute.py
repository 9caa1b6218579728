"""Running one stage of one module through the cache.

For each module and stage: key = hash(canonical JSON of stage salt, stage settings, tool versions
and the digests of its input artifacts). A hit reuses the record; a miss runs the stage in its own
process under a per-key lock into a temp folder and publishes it. An unchanged build only hashes
small files.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from trtforge.cache import Provenance, Record, Store, imports, key_of
from trtforge.cache.keys import forget_stats
from trtforge.cache.plan import Plan, StageKey
from trtforge.cache.testhooks import checkpoint
from trtforge.driver import timing
from trtforge.driver.context import RunContext
from trtforge.driver.logs import keep_failed_logs
from trtforge.driver.overlap import ALONE, Around
from trtforge.driver.results import ModuleResult
from trtforge.errors import NotBuiltYet, TrtforgeError
from trtforge.manifest import ModuleSpec
from trtforge.processes import interrupts
from trtforge.processes.isolate import run_in_child
from trtforge.stage import Stage, StageContext, StageInputs, Upstream


def stage_key(
    stage: Stage, module: ModuleSpec, root: Path, upstream: dict[str, Record], deps: dict | None = None
) -> tuple[str, dict]:
    """The key and key document. For a stage that tracks imports, `deps` is a recorded set of loaded
    files (hashed as they are now); None gives the base key: settings and inputs alone."""
    material = stage.key_material(module, root)
    if stage.tracks_imports(module):
        material["imports"] = None if deps is None else imports.material(deps, root)
    doc = {
        "stage": stage.name,
        "salt": stage.version,
        "material": material,
        "inputs": {dep: rec.digests() for dep, rec in sorted(upstream.items())},
    }
    return key_of(doc), doc


def stage_keying(stage: Stage, module: ModuleSpec, root: Path, upstream: dict[str, Record]) -> StageKey:
    """How the cache keys this stage of this module on these upstream records (cache/plan.py)."""
    return StageKey(
        module.name, stage.name, partial(stage_key, stage, module, root, upstream), stage.tracks_imports(module)
    )


def plan_stage(store: Store, stage: Stage, module: ModuleSpec, root: Path, upstream: dict[str, Record]) -> Plan:
    """The stage's plan: the key that applies now, the record when the cache holds it, what
    changed since its last build (`explain`, `plan` and stale marks ask this too)."""
    return store.plan(stage_keying(stage, module, root, upstream))


def _in_child(stage: Stage, ctx: StageContext, workdir: Path, track: bool) -> dict:
    """The stage's own process: its run, and (for a stage keyed on the code it loads) the files of
    every module loaded here when it finished."""
    checkpoint(f"run:{stage.name}")  # inside the stage's own process (test hook)
    meta = stage.run(ctx, workdir)
    interrupts.check()  # a signal whose exception a native callback swallowed: nothing is kept
    return {"meta": meta, "deps": imports.snapshot(ctx.root) if track else {}}


def _run(
    ctx: RunContext,
    stage: Stage,
    module: ModuleSpec,
    upstream: dict[str, Record],
    plan: Plan,
    around: Around = ALONE,
) -> Plan:
    """Run the stage in its own process into a work folder and store it; returns the plan with
    its record (for a stage keyed on the code it loaded: under the key of what this run loaded)."""
    store, root = ctx.store, ctx.manifest.root
    timing_target = stage.timing_target(module)
    inputs = StageInputs({d: Upstream(store.view(rec), rec.meta) for d, rec in upstream.items()})
    sctx = StageContext(
        module=module,
        root=root,
        inputs=inputs,
        timing_cache=None if timing_target is None else timing.seed(store, timing_target),
        prepared=around.prepared,
    )
    track = plan.keying.tracks
    if track:
        imports.prewarm()  # read once here, inherited by every stage child this build forks
    t0, t0_ns = time.perf_counter(), time.time_ns()
    with store.workdir(f"{module.name}.{stage.name}") as wd:
        try:
            child = around.beside.start() if around.beside is not None else None  # the next stage's ahead work
            out, peak_kib = run_in_child(
                partial(_in_child, stage, sctx, wd, track), module=module.name, stage=stage.name, beside=child
            )
        except TrtforgeError as e:  # the work folder goes; its log must not
            log = keep_failed_logs(store.root, module.name, stage.name, wd)
            if log is not None:
                e.hint = f"{e.hint}; log: {log}" if e.hint else f"log: {log}"
            raise
        checkpoint(f"stage:{stage.name}")
        interrupts.check()  # a signal met by this process meanwhile: nothing is stored
        forget_stats()  # the keys below see the files as they are now
        # kept in the record so a report of a cached run can still say what it cost
        meta = {
            **out["meta"],
            "run_seconds": round(time.perf_counter() - t0, 3),
            "peak_rss_mib": round(peak_kib / 1024),
        }
        deps = out["deps"]
        done = plan.rekeyed(deps)
        changed = imports.changed_after(deps, root, t0_ns) if track else None
        # an input that changed while the stage ran must not be published under this key
        if plan.keying.compute(None)[0] != plan.base or changed:
            raise TrtforgeError(
                "an input changed during the build; not published",
                where=changed or f"{stage.name}",
                module=module.name,
                hint="run again",
            )
        done = store.commit(done, wd, meta, Provenance(module.name, deps))
        if timing_target is not None:  # the next build of this target starts from this one's timings
            timing.remember(store, timing_target, done.require())
    return done


def run_stage(
    ctx: RunContext,
    stage: Stage,
    module: ModuleSpec,
    upstream: dict[str, Record],
    result: ModuleResult,
    force: bool = False,
    *,
    around: Around = ALONE,
) -> Record:
    """The stage's record: from the cache, or built now (always, with `force`); its status and
    the cache's notes go on `result`. `around`: its overlap with the stages before and after."""
    store, progress = ctx.store, ctx.progress
    status = result.stages[stage.name]
    checkpoint(f"before:{stage.name}")
    plan = plan_stage(store, stage, module, ctx.manifest.root, upstream)
    if force or not plan.hit:
        if ctx.assembling:
            raise NotBuiltYet(
                f"not built yet by any runner (stage {stage.name}, key {plan.key[:12]})",
                module=module.name,
                hint="build it on a runner for this target, then assemble again",
            )
        with store.claim(plan, force) as plan:
            if force or not plan.hit:
                t0 = time.perf_counter()
                if progress is not None:
                    progress.start(module.name, stage.name)
                try:
                    plan = _run(ctx, stage, module, upstream, plan, around)
                finally:  # a failed stage's time counts too (reports, build --junit)
                    status.seconds = time.perf_counter() - t0
                status.state = "ok"
                if progress is not None:
                    progress.done(module.name, stage.name, status.seconds, plan.require().meta.get("peak_rss_mib"))
    store.settle(plan, result.notes)
    status.key = plan.key
    if status.state != "ok":
        status.state = "cached"
    status.meta = plan.require().meta
    return plan.require()
