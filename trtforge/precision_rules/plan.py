"""A precision plan: which nodes stay FP32, by which rule and why, and what almost matched."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_graphsurgeon as gs

FP16_MAX = 65504.0


@dataclass
class RuleResult:
    rule: str
    matched: dict[str, str] = field(default_factory=dict)  # node name -> reason
    near_misses: list[dict] = field(default_factory=list)  # {"node", "reason"}
    # why matching nothing is the intended result (auto found no hot block, a CNN has no attention):
    # then no warning, since there is nothing for the user to do
    empty_ok: str | None = None


@dataclass
class PrecisionPlan:
    fp32: dict[str, dict] = field(default_factory=dict)  # node -> {"rule", "reason", "op"}
    near_misses: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, result: RuleResult, graph: gs.Graph) -> None:
        ops = {n.name: n.op for n in graph.nodes}
        for name, reason in result.matched.items():
            self.fp32.setdefault(name, {"rule": result.rule, "reason": reason, "op": ops.get(name)})
        self.near_misses.extend({"rule": result.rule, **m} for m in result.near_misses)
        if not result.matched and not result.empty_ok:
            hint = "; ".join(f"{m['node']}: {m['reason']}" for m in result.near_misses[:5])
            self.warnings.append(f"rule '{result.rule}' matched no node" + (f" (near misses: {hint})" if hint else ""))

    def as_json(self) -> dict:
        return {"fp32": dict(sorted(self.fp32.items())), "near_misses": self.near_misses, "warnings": self.warnings}


def producer(t) -> gs.Node | None:
    return t.inputs[0] if isinstance(t, gs.Variable) and t.inputs else None


def name_unnamed(graph: gs.Graph) -> int:
    """Plans name nodes; give each unnamed node a unique name from its op and first output."""
    taken = {n.name for n in graph.nodes if n.name}
    count = 0
    for node in graph.nodes:
        if node.name:
            continue
        base = f"{node.op}_{node.outputs[0].name}" if node.outputs else node.op
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        node.name = name
        taken.add(name)
        count += 1
    return count
