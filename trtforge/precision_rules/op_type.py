"""Keep every node of the given op types FP32 (e.g. ops = ["Softmax", "LayerNormalization"])."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from trtforge.precision_rules.plan import RuleResult


class OpTypeRule:
    name = "op_type"

    def __init__(self, ops):
        self.ops = list(ops)

    def select(self, graph: gs.Graph, probe=None) -> RuleResult:
        result = RuleResult(self.name)
        for node in graph.nodes:
            if node.op in self.ops:
                result.matched[node.name] = f"op type {node.op}"
        return result
