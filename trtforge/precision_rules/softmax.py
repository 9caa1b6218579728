"""Keep every Softmax / LogSoftmax FP32, with the scale and mask ops directly in front of it.

The cheap option: exp() and the normalising sum in FP32 (logits above ~11 overflow exp in FP16)
while every MatMul, including an attention block's Q.K^T, stays FP16 and fusable. It does not help
when the scores themselves pass 65504 (the FP16-hostile fixture): such Softmaxes are reported as
near misses pointing at `attention_score`.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from trtforge.precision_rules.attention_score import BETWEEN, score_chain
from trtforge.precision_rules.plan import RuleResult


class SoftmaxRule:
    name = "softmax"

    def __init__(self, with_scale: bool = True):
        self.with_scale = bool(with_scale)

    def select(self, graph: gs.Graph, probe=None) -> RuleResult:
        result = RuleResult(self.name)
        for node in graph.nodes:
            if node.op not in ("Softmax", "LogSoftmax"):
                continue
            result.matched[node.name] = f"{node.op}"
            chain, _ = score_chain(node)
            if chain is None:
                continue
            if self.with_scale:
                for n in chain[1:-1]:
                    if n.op in BETWEEN:
                        result.matched[n.name] = f"scale/mask in front of {node.op} '{node.name}'"
            result.near_misses.append(
                {
                    "node": chain[-1].name,
                    "reason": (
                        f"score MatMul of {node.op} '{node.name}' stays FP16; use attention_score if its "
                        "scores can pass 65504"
                    ),
                }
            )
        return result
