"""Running one stage of one module through the cache.

For each module and stage: key = hash(canonical JSON of stage salt, stage settings, tool versions
and the digests of its input artifacts). A hit reuses the record; a miss runs the stage in its own
process under a per-key lock into a temp folder and publishes it. An unchanged build only hashes
small files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from trtforge import interrupts
from trtforge.cache import Provenance, Record, Store, imports, key_of
from trtforge.cache.keys import forget_stats
from trtforge.cache.store import cache_writes
from trtforge.cache.testhooks import checkpoint
from trtforge.driver import timing
from trtforge.driver.context import RunContext
from trtforge.driver.logs import keep_failed_logs
from trtforge.driver.results import ModuleResult
from trtforge.errors import NotBuiltYet, TrtforgeError
from trtforge.isolate import run_in_child
from trtforge.manifest import ModuleSpec
from trtforge.stage import StageContext


def tracks_imports(stage, module: ModuleSpec) -> bool:
    """Whether the stage's key covers the code its run loaded (export: the factory's imports;
    graph_passes: a user pass's)."""
    tracks = getattr(stage, "tracks_imports", None)
    return bool(tracks and tracks(module))


def stage_key(
    stage, module: ModuleSpec, root: Path, upstream: dict[str, Record], deps: dict | None = None
) -> tuple[str, dict]:
    """The key and key document. For a stage that tracks imports, `deps` is a recorded set of loaded
    files (hashed as they are now); None gives the base key: settings and inputs alone."""
    material = stage.key_material(module, root)
    if tracks_imports(stage, module):
        material["imports"] = None if deps is None else imports.material(deps, root)
    doc = {
        "stage": stage.name,
        "salt": stage.version,
        "material": material,
        "inputs": {dep: rec.digests() for dep, rec in sorted(upstream.items())},
    }
    return key_of(doc), doc


@dataclass
class Plan:
    """What a stage's key is now: `key`/`doc` to build under (for an import-tracking stage, with
    the files of the newest earlier record), `record` when the cache already holds it."""

    base: str
    key: str
    doc: dict
    record: Record | None = None


def plan_stage(store: Store, stage, module: ModuleSpec, root: Path, upstream: dict[str, Record]) -> Plan:
    base, doc = stage_key(stage, module, root, upstream)
    if not tracks_imports(stage, module):
        return Plan(base, base, doc, store.lookup(base))
    plan = None
    # the records built from this base, then the module's last one (its files, hashed now, are
    # what `explain` compares when the settings changed too)
    last = store.last(module.name, stage.name)
    for key in dict.fromkeys([*store.deps_keys(base), *([last["key"]] if last else [])]):
        rec = store.lookup(key)
        if rec is None:
            continue
        now_key, now_doc = stage_key(stage, module, root, upstream, rec.deps)
        if now_key == rec.key:
            return Plan(base, now_key, now_doc, rec)
        plan = plan or Plan(base, now_key, now_doc)  # the newest: what explain compares with
    found = remote_plan(store, stage, module, root, upstream, base)
    return found or plan or Plan(base, base, doc)


def remote_plan(
    store: Store, stage, module: ModuleSpec, root: Path, upstream: dict[str, Record], base: str
) -> Plan | None:
    """Another runner's record for this base key whose loaded files hash the same here (asked
    only when no local one applies: a no-op build never lists the remote)."""
    for key in store.remote_deps_keys(base):
        rec = store.lookup(key)
        if rec is None:
            continue
        now_key, now_doc = stage_key(stage, module, root, upstream, rec.deps)
        if now_key == rec.key:
            store.add_deps_key(base, key, push=False)
            return Plan(base, now_key, now_doc, rec)
    return None


def _in_child(stage, ctx: StageContext, workdir: Path, track: bool) -> dict:
    """The stage's own process: its run, and (for a stage keyed on the code it loads) the files of
    every module loaded here when it finished."""
    checkpoint(f"run:{stage.name}")  # inside the stage's own process (test hook)
    meta = stage.run(ctx, workdir)
    interrupts.check()  # a signal whose exception a native callback swallowed: nothing is kept
    return {"meta": meta, "deps": imports.snapshot(ctx.root) if track else {}}


def _run(
    store: Store, stage, module: ModuleSpec, root: Path, upstream: dict[str, Record], plan: Plan
) -> tuple[Record, str, dict]:
    """Run the stage in its own process into a work folder and store it; returns the record and
    its key and doc."""
    folders = {dep: store.view(rec) for dep, rec in upstream.items()}
    timing_target = stage.timing_target(module) if hasattr(stage, "timing_target") else None
    ctx = StageContext(
        module=module,
        root=root,
        inputs=folders,
        upstream_meta={d: r.meta for d, r in upstream.items()},
        timing_cache=None if timing_target is None else timing.seed(store, timing_target),
    )
    track = tracks_imports(stage, module)
    if track:
        imports.prewarm()  # read once here, inherited by every stage child this build forks
    t0, t0_ns = time.perf_counter(), time.time_ns()
    with store.workdir(f"{module.name}.{stage.name}") as wd:
        try:
            out, peak_kib = run_in_child(
                partial(_in_child, stage, ctx, wd, track), module=module.name, stage=stage.name
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
        key, doc, deps, changed = plan.key, plan.doc, out["deps"], None
        if track:
            key, doc = stage_key(stage, module, root, upstream, deps)
            changed = imports.changed_after(deps, root, t0_ns)
        # an input that changed while the stage ran must not be published under this key
        if stage_key(stage, module, root, upstream)[0] != plan.base or changed:
            raise TrtforgeError(
                "an input changed during the build; not published",
                where=changed or f"{stage.name}",
                module=module.name,
                hint="run again",
            )
        if track:  # first: a pointer to a missing record is only a miss
            store.add_deps_key(plan.base, key)
        record = store.put(key, stage.name, doc, wd, meta, Provenance(module.name, deps))
        if timing_target is not None:  # the next build of this target starts from this one's timings
            timing.remember(store, timing_target, record)
    return record, key, doc


def run_stage(
    ctx: RunContext, stage, module: ModuleSpec, upstream: dict[str, Record], result: ModuleResult, force: bool = False
) -> Record:
    """The stage's record: from the cache, or built now (always, with `force`); its status and
    the cache's notes go on `result`."""
    store, root, progress = ctx.store, ctx.manifest.root, ctx.progress
    status = result.stages[stage.name]
    checkpoint(f"before:{stage.name}")
    plan = plan_stage(store, stage, module, root, upstream)
    record = None if force else plan.record
    if record is None and ctx.assembling:
        raise NotBuiltYet(
            f"not built yet by any runner (stage {stage.name}, key {plan.key[:12]})",
            module=module.name,
            hint="build it on a runner for this target, then assemble again",
        )
    if record is None:
        # gc lock shared: `cache gc` waits while a stage reads its inputs' views and stores results
        with cache_writes(store.root), store.gc_lock(exclusive=False), store.lock(plan.base):
            if not force:  # another process may have built it while we waited
                plan = plan_stage(store, stage, module, root, upstream)
                record = plan.record
            if record is None:
                t0 = time.perf_counter()
                if progress is not None:
                    progress.start(module.name, stage.name)
                try:
                    record, key, doc = _run(store, stage, module, root, upstream, plan)
                finally:  # a failed stage's time counts too (reports, build --junit)
                    status.seconds = time.perf_counter() - t0
                plan = Plan(plan.base, key, doc, record)
                status.state = "ok"
                if progress is not None:
                    progress.done(module.name, stage.name, status.seconds, record.meta.get("peak_rss_mib"))
    result.notes.extend(store.take_notes())
    status.key = plan.key
    if status.state != "ok":
        status.state = "cached"
    status.meta = record.meta
    with cache_writes(store.root):
        store.remember(module.name, stage.name, plan.key, plan.doc)
    return record
