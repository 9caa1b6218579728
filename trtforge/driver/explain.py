"""`trtforge explain`: a dry run. Per module and stage, "up to date" or the key fields that changed
since the last build of that stage (a diff of the key JSON kept beside every cache entry)."""

from __future__ import annotations

from trtforge.cache import Store
from trtforge.driver.run import plan_stage
from trtforge.driver.stages import stage_table
from trtforge.errors import TrtforgeError
from trtforge.manifest import Manifest, ModuleSpec


def flatten(doc, prefix: str = "") -> dict:
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(doc, (list, tuple)) and doc:
        out = {}
        for i, v in enumerate(doc):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: doc}


def diff(old: dict, new: dict) -> list[str]:
    a, b = flatten(old), flatten(new)
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<absent>") != b.get(k, "<absent>"):
            lines.append(f"{k}: {_short(a.get(k, '<absent>'))} -> {_short(b.get(k, '<absent>'))}")
    return lines


def _short(v) -> str:
    text = str(v)
    return text if len(text) <= 70 else text[:67] + "..."


def explain_module(store: Store, manifest: Manifest, module: ModuleSpec, backend: str | None = None) -> list[str]:
    lines: list[str] = []
    records: dict = {}
    for stage, deps in stage_table(backend):
        label = f"{module.name} {stage.name}"
        if any(d not in records for d in deps):
            lines.append(f"{label}: will rebuild (an upstream stage rebuilds first)")
            continue
        try:
            plan = plan_stage(store, stage, module, manifest.root, {d: records[d] for d in deps})
        except TrtforgeError as e:
            lines.append(f"{label}: cannot plan: {e.one_line()}")
            break
        lines += [f"{label}: note: {n}" for n in store.take_notes()]
        if plan.record is not None:
            records[stage.name] = plan.record
            lines.append(f"{label}: up to date ({plan.key[:12]})")
            continue
        last = store.last(module.name, stage.name)
        if last is None:
            lines.append(f"{label}: will build (never built with this cache)")
        else:
            changes = diff(last["doc"], plan.doc)
            lines.append(f"{label}: will rebuild; changed: " + ("; ".join(changes) or "cache entry missing"))
    return lines
