"""Pipelines in a build: after the modules they name are built and verified, each pipeline is
checked (through the cache), and its verdict published or its modules withdrawn.

The check's key: the keys of its modules' final artifacts (precision_rules graph, engine, verify
verdict), the pipeline's resolved table (runner, runner_args, inputs, outputs), the digests of the
runner's source files and the tool versions. Same key, same verdict: a rebuild with nothing
changed reads one small record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from trtforge.artifacts import BuildFiles, BuildMeta, VerifyMeta, meta
from trtforge.cache import Provenance, Store, key_of
from trtforge.driver.context import RunContext
from trtforge.driver.publish import publish as publish_module
from trtforge.driver.request import BuildRequest
from trtforge.driver.results import ModuleResult
from trtforge.errors import NotBuiltYet, PublishError, TrtforgeError, VerifyError
from trtforge.manifest import Manifest
from trtforge.manifest.pipelines import PipelineSpec
from trtforge.pipelines.keys import FINAL, KEYED_STAGES, STAGE, key_document
from trtforge.processes.isolate import run_in_child


@dataclass
class PipelineResult:
    name: str
    state: str = "not run"  # ok | cached | failed | not run
    reason: str = ""
    key: str = ""
    meta: dict = field(default_factory=dict)
    error: TrtforgeError | None = None
    seconds: float = 0.0
    peak_rss_kib: int = 0
    published: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "key": self.key,
            "seconds": self.meta.get("seconds", {}),  # the check's own (a cached one keeps them)
            "peak_rss_kib": self.peak_rss_kib,
            "published": self.published,
            "notes": self.notes,
            **{k: self.meta.get(k) for k in ("passed", "outputs", "calls", "series", "crossover", "blame", "order")},
            "modules": self.meta.get("modules", {}),
        }


def module_keys(results: list[ModuleResult]) -> dict[str, dict]:
    return {r.name: {s: r.records[s].key for s in KEYED_STAGES if s in r.records} for r in results}


def _members(spec: PipelineSpec, results: list[ModuleResult]) -> dict[str, list[ModuleResult]]:
    return {name: [r for r in results if r.module == name] for name in spec.modules}


def check_all(ctx: RunContext, results: list[ModuleResult]) -> list[PipelineResult]:
    """Every pipeline whose modules this build built: checked, then published or withdrawn. A
    full build (not a partial request) also withdraws pipelines the manifest no longer names."""
    from trtforge.engines_folder import index as engines_index
    from trtforge.pipelines.published import withdraw

    store, manifest, request = ctx.store, ctx.manifest, ctx.request
    partial, backend = request.partial, request.backend

    if not partial:
        index = engines_index.load(manifest.output_dir) or {}
        for gone in sorted(set(index.get("pipelines", {})) - {p.name for p in manifest.pipelines}):
            withdraw(manifest.output_dir, gone)
    out = []
    for spec in manifest.pipelines:
        members = _members(spec, results)
        pr = PipelineResult(spec.name)
        out.append(pr)
        absent = [n for n, rs in members.items() if not rs]
        for name in absent:  # a partial build: the others, when the cache holds them up to date
            found = _up_to_date(store, manifest, name, backend)
            if found is not None:
                members[name] = [found]
        absent = [n for n, rs in members.items() if not rs]
        if absent:
            pr.reason = f"module '{absent[0]}' is not built and up to date; build it too"
            continue
        broken = [r for rs in members.values() for r in rs if not r.ok]
        if broken:
            pr.reason = f"module '{broken[0].name}' failed"
            continue
        _check(store, manifest, spec, members, pr, request)
        flat = [r for rs in members.values() for r in rs]
        if pr.error is not None:
            withdraw(manifest.output_dir, spec.name)
            for r in flat:
                r.fail("verify", _module_error(pr.error, r), reason=pr.error.one_line())
                if r not in results:  # taken from the cache for this check: its published files go too
                    _withdraw(store, manifest, r)
        else:
            pr.published = publish_pipeline(store, manifest, spec, pr)
    _publish_deferred(store, manifest, results, out, request)
    return out


def _publish_deferred(
    store: Store, manifest: Manifest, results: list[ModuleResult], pipes: list, request: BuildRequest
) -> None:
    """Modules a pipeline names were verified but held back: published now when every pipeline
    naming them passed, else withdrawn (a pipeline not checked, e.g. a partial build without its
    other modules, has not vouched for them)."""
    from trtforge.driver import release
    from trtforge.driver.lifecycle import pin_published
    from trtforge.manifest.targets import for_target

    verdicts = {p.name: p for p in pipes}
    for r in results:
        if not r.deferred:
            continue
        r.deferred = False
        named_by = [p for p in manifest.pipelines if r.module in p.modules]
        unchecked = [p.name for p in named_by if verdicts[p.name].state not in ("ok", "cached")]
        if r.ok and unchecked:
            why = verdicts[unchecked[0]].reason or "not checked"
            r.notes.append(f"not published: pipeline '{unchecked[0]}' did not pass ({why}); build its modules together")
            r.stages["verify"].reason = f"held back: pipeline '{unchecked[0]}' not checked"
            _withdraw(store, manifest, r, withdraw_only=True)
            continue
        _withdraw(store, manifest, r)  # publishes an ok result, withdraws a failed one
        spec = None if r.target is None else next(t for t in manifest.targets if t.name == r.target)
        pin_published(store, r.module, spec, r)
        if r.ok and r.target is not None and r.published and not request.from_cache:
            target = next(t for t in manifest.targets if t.name == r.target)
            release.remember(store, for_target(manifest.module(r.module), target), target, r)


def _up_to_date(store: Store, manifest: Manifest, name: str, backend: str | None) -> ModuleResult | None:
    """Module `name` as the cache holds it when every stage is up to date (nothing is run), for a
    pipeline checked in a build that did not name it; None otherwise."""
    from trtforge.driver.explain import explain_module

    records: dict = {}
    verdicts = explain_module(store, manifest, manifest.module(name), backend, records=records)
    if any(v.state != "up to date" for v in verdicts if v.state != "note") or not set(KEYED_STAGES) <= set(records):
        return None
    result = ModuleResult(name, records=records)
    for stage, record in records.items():
        result.stages[stage].state, result.stages[stage].key = "cached", record.key
    return result


def _module_error(err: TrtforgeError, r: ModuleResult) -> TrtforgeError:
    """The pipeline's error, carried by each module it withdraws (same class: same exit code)."""
    copy = type(err)(err.message, where=err.where, hint=err.hint, module=r.name)
    return copy


def _withdraw(store: Store, manifest: Manifest, r: ModuleResult, withdraw_only: bool = False) -> None:
    """publish()'s own rule: an ok result is published, a failed one withdrawn (`withdraw_only`:
    withdrawn either way)."""
    spec = manifest.module(r.module)
    try:
        if withdraw_only:
            from trtforge.driver.publish import withdraw as withdraw_module
            from trtforge.engines_folder import index as engines_index

            if (manifest.output_dir / engines_index.INDEX).exists():
                with engines_index.locked(manifest.output_dir):
                    index = engines_index.load(manifest.output_dir) or engines_index.empty()
                    withdraw_module(manifest.output_dir, index, r.name)
            r.published = []
        else:
            r.published = publish_module(store, r, manifest.output_dir, spec)
    except PublishError as e:
        if r.error is None:
            r.error = e
        else:
            r.notes.append(f"could not withdraw its files: {e.one_line()}")
    except OSError as e:
        raise PublishError(f"cannot write: {e.strerror}", where=str(e.filename or manifest.output_dir)) from None


def _check(
    store: Store,
    manifest: Manifest,
    spec: PipelineSpec,
    members: dict[str, list[ModuleResult]],
    pr: PipelineResult,
    request: BuildRequest,
) -> None:
    first = {name: rs[0] for name, rs in members.items()}
    doc = key_document(spec, manifest.root, module_keys(list(first.values())))
    pr.key = key = key_of(doc)
    t0 = time.perf_counter()
    record = store.lookup(key)
    if record is not None:
        pr.state, pr.meta = "cached", dict(record.meta)
    elif request.from_cache:  # `build --from-cache`: nothing runs here
        pr.state, pr.reason = "failed", "no runner has stored this pipeline's check yet"
        pr.error = NotBuiltYet(
            f"pipeline '{spec.name}': no runner has stored its check yet",
            where=f"pipelines.{spec.name}",
            hint="build on a runner first (its modules are not published)",
        )
        return
    else:
        finals = {name: store.view(r.records[FINAL]) for name, r in first.items()}
        engines = _runnable_engines(store, first)
        with store.lock(key), store.workdir(f"pipeline-{spec.name}") as work:
            record = store.lookup(key)
            if record is not None:
                pr.state, pr.meta = "cached", dict(record.meta)
            else:
                try:
                    result, peak = run_in_child(
                        lambda: _in_child(spec, manifest, finals, work, engines),
                        module=f"pipelines.{spec.name}",
                        stage=STAGE,
                    )
                except TrtforgeError as e:
                    pr.state, pr.error, pr.reason = "failed", e, e.one_line()
                    pr.seconds = time.perf_counter() - t0
                    return
                result["peak_rss_kib"] = peak
                result["modules"] = {n: _engine_status(r) for n, r in first.items()}
                record = store.put(key, STAGE, doc, work, result, Provenance(f"pipelines/{spec.name}"))
                store.remember(f"pipelines/{spec.name}", STAGE, key, doc)
                pr.state, pr.meta = "ok", dict(record.meta)
    pr.seconds = time.perf_counter() - t0
    pr.peak_rss_kib = int(pr.meta.get("peak_rss_kib", 0))
    m = pr.meta
    for name, st in m.get("modules", {}).items():
        if st["engine"] != "ok":
            why = st["reason"].removeprefix("engine not run here: ") or st["engine"]
            pr.notes.append(f"module '{name}': engine not run here: {why}; the FP16 graph stood in for it")
    if not m["passed"]:
        pr.state, pr.reason = "failed", m["reason"]
        pr.error = VerifyError(
            f"pipeline '{spec.name}' failed: {m['reason']}; the crossover blames module '{m['blame']}'",
            where=f"pipelines.{spec.name}",
            hint="its modules are not published; `trtforge debug-precision <module>` searches FP32 islands",
        )
    elif request.require_engine_check and pr.notes:
        pr.state, pr.reason = "failed", pr.notes[0]
        pr.error = VerifyError(
            f"pipeline '{spec.name}': engine check required but {pr.notes[0]}",
            where=f"pipelines.{spec.name}",
            hint="run on a GPU the engines support, or drop --require-engine-check",
        )


def _in_child(spec: PipelineSpec, manifest: Manifest, finals: dict, work: Path, engines: dict | None) -> dict:
    from trtforge.stage import capture_output

    # the runner's and the libraries' chatter goes to pipeline.log in the cache entry
    with capture_output(work / "pipeline.log"):
        from trtforge.pipelines.check import check_pipeline  # torch and the runner: only in the child

        return check_pipeline(spec, manifest, finals, work, engines)


def _runnable_engines(store: Store, first: dict[str, ModuleResult]) -> dict | None:
    """{module: {path, backend, profiles}} when every module's engine ran in its verify stage
    here (so it runs here); None otherwise: the FP16 graph stands in and the report says so."""
    if any(_engine_status(r)["engine"] != "ok" for r in first.values()):
        return None
    out = {}
    for name, r in first.items():
        build = meta(r.records["build"], BuildMeta)
        path = store.view(r.records["build"]) / BuildFiles.ENGINE
        out[name] = {"path": str(path), "backend": build["backend"], "profiles": build.get("profiles")}
    return out


def _engine_status(r: ModuleResult) -> dict:
    engine = meta(r.records["verify"], VerifyMeta)["checks"]["engine"] if "verify" in r.records else {}
    return {"engine": engine.get("status", "not run"), "reason": engine.get("reason", "")}


def publish_pipeline(store: Store, manifest: Manifest, spec: PipelineSpec, pr: PipelineResult) -> list[str]:
    """The pipeline's inputs and reference outputs beside the engines (pipelines/NAME/), with a
    sidecar naming its modules, runner and checks; listed in index.json."""
    from trtforge.pipelines.published import INPUTS, REFERENCE, publish_files

    record = store.lookup(pr.key)
    if record is None:  # the record was just read or written: a miss here is a removed cache
        return []
    view = store.view(record)
    try:
        return publish_files(manifest.output_dir, spec, {f: view / f for f in (INPUTS, REFERENCE)}, pr.meta)
    except OSError as e:
        raise PublishError(f"cannot write: {e.strerror}", where=str(e.filename or manifest.output_dir)) from None
