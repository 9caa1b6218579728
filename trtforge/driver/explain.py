"""`trtforge explain`: a dry run. Per module and stage, "up to date" or the key fields that changed
since the last build of that stage (a diff of the key JSON kept beside every cache entry)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from trtforge.cache import Store
from trtforge.cache.plan import diff
from trtforge.driver.context import RunContext
from trtforge.driver.execute import plan_stage
from trtforge.driver.stages import stage_table
from trtforge.errors import TrtforgeError
from trtforge.manifest import Manifest, ModuleSpec
from trtforge.manifest.targets import TargetSpec, for_target, select, unavailable


@dataclass(frozen=True)
class Verdict:
    """One line of `explain`: what would happen to a module's stage. `state` is "up to date",
    "build" (never built, or an upstream stage rebuilds first), "rebuild" (key fields changed),
    "cannot plan" (a user mistake found while computing the key) or "note"."""

    module: str
    stage: str
    state: str
    text: str
    changes: tuple[str, ...] = ()  # "rebuild": each changed key field, "path: old -> new"

    def __str__(self) -> str:
        return self.text


def check_exit_code(verdicts: list[Verdict]) -> int:
    """`explain --check`: 2 when something cannot be planned, 1 when something would (re)build,
    0 when everything is up to date."""
    states = {v.state for v in verdicts}
    return 2 if "cannot plan" in states else 1 if states & {"build", "rebuild"} else 0


def _say(
    lines: list[Verdict], module: str, stage: str, state: str, text: str, changes: list[str] | None = None
) -> None:
    lines.append(Verdict(module, stage, state, f"{module} {stage}: {text}", tuple(changes or ())))


def explain_targets(
    store: Store,
    manifest: Manifest,
    modules: list[ModuleSpec],
    backend: str | None = None,
    targets: tuple = (),
    records: dict[str, dict] | None = None,
) -> list[Verdict]:
    """Every module for every target (`targets`: names of [targets.NAME] tables, all by default),
    under the keys `trtforge build` computes for that target; the lines name "<target>/<module>".
    A manifest without targets explains the default target, as before targets existed. `records`
    (module -> stage records up to date) receives the first target's, as a pipeline check keys on
    the first target's records (pipelines/drive.py)."""
    records = {} if records is None else records
    if not manifest.targets:
        return [
            v
            for m in modules
            for v in explain_module(store, manifest, m, backend, records=records.setdefault(m.name, {}))
        ]
    picked = select(manifest.targets, tuple(targets))
    return [
        v
        for m in modules
        for i, t in enumerate(picked)
        for v in explain_module(store, manifest, m, None, t, records=records.setdefault(m.name, {}) if i == 0 else None)
    ]


def explain_module(
    store: Store,
    manifest: Manifest,
    module: ModuleSpec,
    backend: str | None = None,
    target: TargetSpec | None = None,
    records: dict | None = None,
) -> list[Verdict]:
    """`records`, when given, receives the records of the stages that are up to date."""
    lines: list[Verdict] = []
    records = {} if records is None else records
    label = module.name if target is None else f"{target.name}/{module.name}"
    module = for_target(module, target)  # as lifecycle.run_stages builds it
    for stage, deps in stage_table(backend, None, target):
        say = partial(_say, lines, label, stage.name)
        if any(d not in records for d in deps):
            say("build", "will rebuild (an upstream stage rebuilds first)")
            continue
        try:
            plan = plan_stage(store, stage, module, manifest.root, {d: records[d] for d in deps})
        except TrtforgeError as e:
            say("cannot plan", f"cannot plan: {e.one_line()}")
            break
        for n in store.take_notes():
            say("note", f"note: {n}")
        if plan.record is not None:
            records[stage.name] = plan.record
            say("up to date", f"up to date ({plan.key[:12]})")
            continue
        if plan.last is None:
            say("build", "will build (never built with this cache)")
        else:
            changes = plan.changes
            say("rebuild", "will rebuild; changed: " + ("; ".join(changes) or "cache entry missing"), changes)
    return lines


def explain_pipelines(store: Store, manifest: Manifest, records: dict[str, dict]) -> list[Verdict]:
    """Each [pipelines.NAME] whose modules were explained: its check up to date, or what changed
    (the modules' final keys, the runner's code, its table). `records`: module -> stage records."""
    from trtforge.cache import key_of
    from trtforge.pipelines.keys import KEYED_STAGES, STAGE, key_document

    lines: list[Verdict] = []
    for spec in manifest.pipelines:
        if not all(m in records for m in spec.modules):
            continue
        say = partial(_say, lines, f"pipelines/{spec.name}", STAGE)
        stale = [m for m in spec.modules if any(s not in records[m] for s in KEYED_STAGES)]
        if stale:
            say("build", f"will rerun (module '{stale[0]}' rebuilds first)")
            continue
        keys = {m: {s: records[m][s].key for s in KEYED_STAGES} for m in spec.modules}
        doc = key_document(spec, manifest.root, keys)
        key = key_of(doc)
        if store.lookup(key) is not None:
            say("up to date", f"up to date ({key[:12]})")
            continue
        last = store.last(f"pipelines/{spec.name}", STAGE)
        if last is None:
            say("build", "will run (never checked with this cache)")
        else:
            say("rebuild", "will rerun; changed: " + ("; ".join(diff(last["doc"], doc)) or "cache entry missing"))
    return lines


def engines_to_build(ctx: RunContext, modules: list[ModuleSpec]) -> int:
    """How many engines (module, per target with [targets]) of this run have a stage to run: the
    progress count's denominator ("[1/1]" when one of three modules changed, not "[1/3]"). A target
    this machine cannot build runs nothing; an assembling run builds nothing; with `force_from`
    every other engine runs. The cache's notes are left for the build's own lookups."""
    if ctx.assembling:
        return 0
    request, store = ctx.request, ctx.store
    targets = [t for t in ctx.targets if unavailable(t) is None] if ctx.manifest.targets else [None]
    if request.until is not None:
        targets = [None]  # the stages every target shares, once per module
    if request.force_from is not None:
        return len(modules) * len(targets)
    notes, store.notes = store.notes, []
    try:
        return sum(not _up_to_date(ctx, m, t) for m in modules for t in targets)
    finally:
        store.notes = notes


def _up_to_date(ctx: RunContext, module: ModuleSpec, target: TargetSpec | None) -> bool:
    records: dict = {}
    module = for_target(module, target)  # as lifecycle.run_stages builds it
    for stage, deps in stage_table(ctx.request.backend, ctx.request.until, target):
        try:
            plan = plan_stage(ctx.store, stage, module, ctx.manifest.root, {d: records[d] for d in deps})
        except TrtforgeError:
            return False  # the build reports it
        if plan.record is None:
            return False
        records[stage.name] = plan.record
    return True
