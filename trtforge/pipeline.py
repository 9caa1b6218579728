"""The driver: the one module that knows the stage order. Stages hand each other cache records
(folders of files + digests + metadata) and never import each other.

For each module and stage: key = hash(canonical JSON of stage salt, stage settings, tool versions
and the digests of its input artifacts). A hit reuses the record; a miss runs the stage under a
per-key lock into a temp folder and publishes it. An unchanged build only hashes small files.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from trtforge import interrupts
from trtforge.build import BuildStage
from trtforge.cache import Record, Store, imports, key_of
from trtforge.cache.keys import forget_stats
from trtforge.cache.store import CorruptEntry, cache_writes
from trtforge.cache.testhooks import checkpoint
from trtforge.errors import TrtforgeError, VerifyError
from trtforge.export import ExportStage
from trtforge.isolate import run_in_child
from trtforge.graph_passes import GraphPassesStage
from trtforge.manifest import Manifest, ModuleSpec
from trtforge.precision_rules import PrecisionStage
from trtforge.stage import StageContext
from trtforge.verify import VerifyStage

# (stage, the upstream stages whose artifacts it reads)
def stage_table(backend: str | None = None) -> tuple:
    return (
        (ExportStage(), ()),
        (GraphPassesStage(), ("export",)),
        (PrecisionStage(), ("export", "graph_passes")),  # export: example inputs for data rules
        (BuildStage(backend_override=backend), ("precision_rules", "export")),  # export: layers before passes
        (VerifyStage(), ("export", "graph_passes", "precision_rules", "build")),
    )


STAGE_NAMES = ("export", "graph_passes", "precision_rules", "build", "verify")


@dataclass
class StageStatus:
    state: str = "not run"  # ok | cached | failed | not run
    reason: str = ""
    seconds: float = 0.0
    key: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class ModuleResult:
    name: str
    stages: dict = field(default_factory=lambda: {s: StageStatus() for s in STAGE_NAMES})
    error: TrtforgeError | None = None
    records: dict = field(default_factory=dict)
    published: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    remote: dict = field(default_factory=dict)  # remote cache: stages fetched/uploaded, failure

    @property
    def ok(self) -> bool:
        return self.error is None


def tracks_imports(stage, module: ModuleSpec) -> bool:
    """Whether the stage's key covers the code its run loaded (export: the factory's imports;
    graph_passes: a user pass's)."""
    tracks = getattr(stage, "tracks_imports", None)
    return bool(tracks and tracks(module))


def stage_key(stage, module: ModuleSpec, root: Path, upstream: dict[str, Record],
              deps: dict | None = None) -> tuple[str, dict]:
    """The key and key document. For a stage that tracks imports, `deps` is a recorded set of loaded
    files (hashed as they are now); None gives the base key: settings and inputs alone."""
    material = stage.key_material(module, root)
    if tracks_imports(stage, module):
        material["imports"] = None if deps is None else imports.material(deps, root)
    doc = {"stage": stage.name, "salt": stage.version, "material": material,
           "inputs": {dep: rec.digests() for dep, rec in sorted(upstream.items())}}
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


def remote_plan(store: Store, stage, module: ModuleSpec, root: Path, upstream: dict[str, Record],
                base: str) -> Plan | None:
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


def keep_failed_logs(cache_root: Path, module: str, stage: str, workdir: Path) -> Path | None:
    """Copy a failed stage's *.log (export.log, build.log) to <cache>/logs/<module>/<stage>.log,
    replacing the previous failure's: a failed stage has no cache entry to hold it. Written without
    following symlinks (a link planted at logs/<module> or at the log itself is replaced, never
    written through): folders opened O_NOFOLLOW, a temp file, then a rename."""
    logs = sorted(workdir.glob("*.log"))
    if not logs:
        return None
    try:
        _write_nofollow(cache_root, ("logs", module), f"{stage}.log", b"".join(p.read_bytes() for p in logs))
    except OSError:
        return None
    return cache_root / "logs" / module / f"{stage}.log"


def _write_nofollow(root: Path, folders: tuple[str, ...], name: str, data: bytes) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in folders:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        tmp = f".{name}.{os.getpid()}.tmp"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as f:
                f.write(data)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a link, never follows it
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise
    finally:
        os.close(fd)


def _in_child(stage, ctx: StageContext, workdir: Path, track: bool) -> dict:
    """The stage's own process: its run, and (for a stage keyed on the code it loads) the files of
    every module loaded here when it finished."""
    checkpoint(f"run:{stage.name}")  # inside the stage's own process (test hook)
    meta = stage.run(ctx, workdir)
    interrupts.check()  # a signal whose exception a native callback swallowed: nothing is kept
    return {"meta": meta, "deps": imports.snapshot(ctx.root) if track else {}}


def _run(store: Store, stage, module: ModuleSpec, root: Path, upstream: dict[str, Record],
         plan: Plan) -> tuple[Record, str, dict]:
    """Run the stage in its own process into a work folder and store it; returns the record and
    its key and doc."""
    folders = {dep: store.view(rec) for dep, rec in upstream.items()}
    ctx = StageContext(module=module, root=root, inputs=folders,
                       upstream_meta={d: r.meta for d, r in upstream.items()})
    track = tracks_imports(stage, module)
    t0, t0_ns = time.perf_counter(), time.time_ns()
    with store.workdir(f"{module.name}.{stage.name}") as wd:
        try:
            out, peak_kib = run_in_child(partial(_in_child, stage, ctx, wd, track), module=module.name,
                                         stage=stage.name)
        except TrtforgeError as e:  # the work folder goes; its log must not
            log = keep_failed_logs(store.root, module.name, stage.name, wd)
            if log is not None:
                e.hint = f"{e.hint}; log: {log}" if e.hint else f"log: {log}"
            raise
        checkpoint(f"stage:{stage.name}")
        interrupts.check()  # a signal met by this process meanwhile: nothing is stored
        forget_stats()  # the keys below see the files as they are now
        # kept in the record so a report of a cached run can still say what it cost
        meta = {**out["meta"], "run_seconds": round(time.perf_counter() - t0, 3),
                "peak_rss_mib": round(peak_kib / 1024)}
        key, doc, deps, changed = plan.key, plan.doc, out["deps"], None
        if track:
            key, doc = stage_key(stage, module, root, upstream, deps)
            changed = imports.changed_after(deps, root, t0_ns)
        # an input that changed while the stage ran must not be published under this key
        if stage_key(stage, module, root, upstream)[0] != plan.base or changed:
            raise TrtforgeError("an input changed during the build; not published",
                                where=changed or f"{stage.name}", module=module.name, hint="run again")
        if track:  # first: a pointer to a missing record is only a miss
            store.add_deps_key(plan.base, key)
        record = store.put(key, stage.name, doc, wd, meta, deps)
    return record, key, doc


def run_stage(store: Store, stage, module: ModuleSpec, root: Path, upstream: dict[str, Record],
              status: StageStatus, progress=None, *, force: bool = False, notes: list | None = None) -> Record:
    """The stage's record: from the cache, or built now (always, with `force`)."""
    checkpoint(f"before:{stage.name}")
    plan = plan_stage(store, stage, module, root, upstream)
    record = None if force else plan.record
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
                record, key, doc = _run(store, stage, module, root, upstream, plan)
                plan = Plan(plan.base, key, doc, record)
                status.state, status.seconds = "ok", time.perf_counter() - t0
                if progress is not None:
                    progress.done(module.name, stage.name, status.seconds)
    if notes is not None:
        notes.extend(store.take_notes())
    status.key = plan.key
    if status.state != "ok":
        status.state = "cached"
    status.meta = record.meta
    with cache_writes(store.root):
        store.remember(module.name, stage.name, plan.key, plan.doc)
    return record


def build_module(store: Store, manifest: Manifest, module: ModuleSpec, backend: str | None = None,
                 progress=None, force_from: str | None = None) -> ModuleResult:
    """Every stage of one module; `force_from` (a stage name) re-runs that stage and every later
    one, ignoring cache hits."""
    result = ModuleResult(module.name)
    for attempt in range(2):  # a corrupt blob found on read is forgotten and rebuilt once
        try:
            for stage, deps in stage_table(backend):
                status = result.stages[stage.name]
                force = force_from is not None and STAGE_NAMES.index(stage.name) >= STAGE_NAMES.index(force_from)
                try:
                    result.records[stage.name] = run_stage(
                        store, stage, module, manifest.root, {d: result.records[d] for d in deps}, status,
                        progress, force=force, notes=result.notes)
                except TrtforgeError as e:
                    e.module = e.module or module.name
                    status.state, status.reason = "failed", e.one_line()
                    result.error = e
                    _skip_rest(result, stage.name)
                    return result
            verify = result.records["verify"].meta
            if not verify["passed"]:
                blame = verify["blame"]
                reason = verify["checks"][blame]["reason"]
                result.stages["verify"].state = "failed"
                result.stages["verify"].reason = f"failed at {blame}: {reason}"
                result.error = VerifyError(f"verification failed at stage '{blame}': {reason}",
                                           module=module.name, hint="engine not published")
            return result
        except CorruptEntry as e:
            if attempt:
                raise
            store.forget(e.key)
            result = ModuleResult(module.name)
            result.notes.append(f"corrupt cache entry forgotten and rebuilt: {e}")
    return result


def enforce_engine_check(result: ModuleResult) -> None:
    """--require-engine-check: an engine that could not run here fails verification (exit 3, not
    published) instead of passing on its ONNX checks alone."""
    if not result.ok or "verify" not in result.records:
        return
    engine = result.records["verify"].meta["checks"]["engine"]
    if engine["status"] != "ok":
        reason = engine.get("reason") or engine["status"]
        result.stages["verify"].state = "failed"
        result.stages["verify"].reason = f"engine check required: {reason}"
        result.error = VerifyError(f"engine check required but {reason}", module=result.name,
                                   hint="run on a GPU the engine supports, or drop --require-engine-check; "
                                        "engine not published")


def _skip_rest(result: ModuleResult, failed: str) -> None:
    after = STAGE_NAMES[STAGE_NAMES.index(failed) + 1:]
    for name in after:
        result.stages[name] = StageStatus("not run", f"{failed} failed")
