"""Release pointers: what `build --from-cache` assembles a target from on a machine that could
not build it.

The keys of build and verify name the machine that computes them (the TensorRT libraries and the
GPU model of a TensorRT target, the GPUs present for verify), so an assembling machine without
that GPU cannot recompute them. After a runner built, verified and published a module for a
target, it stores a small record (stage `release`, no files) whose key is computed from what any
machine can compute: the target's name and declared settings, the module's build and verify
settings, and the digests of its export and precision_rules artifacts. Its metadata names the
build and verify records. The remote cache shares it like any record; assembling looks it up
and takes those two records from the cache, each checked like any other.
"""

from __future__ import annotations

from trtforge.cache import Provenance, Record, Store, key_of
from trtforge.driver.results import ModuleResult, StageStatus
from trtforge.errors import NotBuiltYet
from trtforge.manifest import ModuleSpec, settings_dict
from trtforge.manifest.targets import TargetSpec

ASSEMBLED = ("build", "verify")  # the stages a release pointer stands for


def pointer(module: ModuleSpec, target: TargetSpec | None, records: dict[str, Record]) -> tuple[str, dict]:
    """The key and key document of (module, target) for these front-stage records; `module` is the
    target's spec (its build settings already the target's)."""
    doc = {
        "stage": "release",
        "target": None
        if target is None
        else {"name": target.name, "overrides": [list(o) for o in target.overrides], "gpu": target.gpu},
        "build": settings_dict(module.build),
        "verify": settings_dict(module.verify),
        "verify_outputs": module.verify_outputs,
        "inputs": {s: records[s].digests() for s in ("export", "precision_rules")},
    }
    return key_of(doc), doc


def remember(store: Store, module: ModuleSpec, target: TargetSpec | None, result: ModuleResult) -> None:
    """After a verified publish: point (module, target) at its build and verify records."""
    if not result.ok or not all(s in result.records for s in ("export", "precision_rules", *ASSEMBLED)):
        return
    key, doc = pointer(module, target, result.records)
    want = {s: result.records[s].key for s in ASSEMBLED}
    current = store.lookup(key)
    if current is not None and {s: current.meta.get(s) for s in ASSEMBLED} == want:
        return
    with store.workdir("release") as wd:
        store.put(key, "release", doc, wd, want, Provenance(module.name))  # `cache ls` names it


def assemble(
    store: Store,
    module: ModuleSpec,
    target: TargetSpec | None,
    records: dict[str, Record],
    stage: str,
    status: StageStatus,
) -> Record:
    """`build --from-cache`: the build or verify record a runner published for this target."""
    key, _ = pointer(module, target, records)
    found = store.lookup(key)
    record = None if found is None else store.lookup(found.meta.get(stage, ""))
    if record is None:
        name = "the default target" if target is None else f"target '{target.name}'"
        raise NotBuiltYet(
            f"not built yet by any runner for {name} (stage {stage})",
            module=module.name,
            hint="build it on a runner for this target, then assemble again",
        )
    status.state, status.key, status.meta = "cached", record.key, record.meta
    return record
