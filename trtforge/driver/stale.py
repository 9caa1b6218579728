"""Published entries that no longer match the manifest after a build that ran a subset.

`build --target a` or `build --module x` publishes only what it ran. Another target's (or module's)
published engine was built from the export, passes and precision plan of its day; when those keys
have moved on (a changed weights file, factory argument or pass list), that engine is stale. Each
sidecar records what the stages upstream of the engine produced (`upstream`, by content); after every build,
each published entry the run did not publish is compared with the keys the manifest gives now
(from this run's records where it ran the module, else planned as `explain` does: hashing small
files, no stage run). A stale entry is marked in index.json and its sidecar (`stale`: the reason)
and reported; `trtforge verify` fails on it (exit 3). Publishing it again clears the mark.
"""

from __future__ import annotations

from trtforge.cache import Record, Store
from trtforge.cache.keys import key_of
from trtforge.driver.execute import plan_stage
from trtforge.driver.results import ModuleResult
from trtforge.driver.stages import STAGE_NAMES, stage_table
from trtforge.errors import TrtforgeError
from trtforge.manifest import Manifest, ModuleSpec

# the stages an engine is built from; their keys never involve a target
UPSTREAM: tuple[str, ...] = STAGE_NAMES[: STAGE_NAMES.index("build")]
_WHAT = {
    "export": "an older export",
    "graph_passes": "an older graph_passes output",
    "precision_rules": "an older precision plan",
}


def content_of(record: Record) -> str:
    """One digest of what a stage's artifacts hold (their digests as later keys name them): two
    runners that built the same bytes under different keys (one had loaded the remote cache's
    libraries before the export ran, which its import record then lists) agree on it."""
    return key_of(record.digests())


def upstream_keys(result: ModuleResult) -> dict[str, str]:
    """What the stages this result's engine was built from produced (the sidecar's `upstream`), by
    content: an entry is stale when those bytes moved on, not when a key did."""
    return {s: content_of(result.records[s]) for s in UPSTREAM if s in result.records}


def planned_records(store: Store, manifest: Manifest, module: ModuleSpec) -> dict[str, Record] | None:
    """The upstream records the manifest gives now, from the cache (as `explain` plans them); None
    when a stage has no record for them (it would run: whatever is published predates it) or
    cannot be planned."""
    records: dict[str, Record] = {}
    for stage, deps in stage_table(until=UPSTREAM[-1]):
        try:
            plan = plan_stage(store, stage, module, manifest.root, {d: records[d] for d in deps})
        except TrtforgeError:
            return None
        store.take_notes()
        if plan.record is None:
            return None
        records[stage.name] = plan.record
    return records


def _first_moved(store: Store, side: dict, now: dict[str, Record] | None) -> str | None:
    """The first upstream stage whose output the entry was not built from (None: current; ""
    when the sidecar cannot say). The sidecar's `upstream` keys; a sidecar from before they were
    recorded is judged by its build record's key document, whose inputs are the digests of the
    export and precision_rules outputs it read (when the cache still holds that document)."""
    built_from = side.get("upstream")
    if isinstance(built_from, dict):
        return next((s for s in UPSTREAM if now is None or built_from.get(s) != content_of(now[s])), None)
    doc = store.key_doc(side["cache_key"]) if isinstance(side.get("cache_key"), str) else None
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, dict) or not inputs:
        return ""
    return next((s for s in UPSTREAM if s in inputs and (now is None or inputs[s] != now[s].digests())), None)


def reason(name: str, moved: str, targets: bool) -> str:
    """The stale mark of entry `name` ("<target>/<module>" or "<module>") whose `moved` stage's
    output is no longer the one it was built from."""
    target, _, module = name.rpartition("/")
    again = f"--target {target} --module {module}" if targets and target else f"--module {module}"
    return f"stale: built from {_WHAT.get(moved, 'older inputs')}; run `trtforge build {again}`"


def find_stale(store: Store, manifest: Manifest, results: list[ModuleResult], index: dict, sidecars) -> dict:
    """{entry name: reason or None} for every published entry this run did not publish and whose
    sidecar (`sidecars(name)` reads it) says what it was built from; None: current (a stale mark
    is cleared). An entry that cannot be judged is left as it is."""
    fresh = {r.name for r in results if r.published}
    ran = {r.module: dict(r.records) for r in results if all(s in r.records for s in UPSTREAM)}
    specs = {m.name: m for m in manifest.modules}
    planned: dict[str, dict | None] = {}
    out: dict[str, str | None] = {}
    for name in sorted(set(index["modules"]) - fresh):
        side = sidecars(name)
        module = name.rpartition("/")[2]
        if not isinstance(side, dict) or module not in specs:
            continue
        if module not in planned:
            planned[module] = ran.get(module) or planned_records(store, manifest, specs[module])
        moved = _first_moved(store, side, planned[module])
        if moved != "":
            out[name] = None if moved is None else reason(name, moved, bool(manifest.targets))
    return out
