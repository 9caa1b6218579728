"""Attention-score rule: MatMul(Q, K^T) -> optional scale (Mul/Div) -> optional additive mask
(Add/Sub/Where) -> Softmax. The score MatMul, the scale/mask ops and the Softmax stay FP32; the
realiser casts back to FP16 before the .V MatMul.

Why: an FP16 Q.K^T overflows once logits pass ~11 after exp (and 65504 before it); a ViT built in
pure FP16 gave mIoU 0.119 instead of 0.988. Keeping exactly this chain FP32 cost 3.7% speed.

Handles 3-D and 4-D layouts, K^T by a Transpose node or pre-transposed weights, torch's SDPA
decomposition (Q and K^T each pre-scaled by sqrt(scale) before the MatMul), and ONNX's own
Attention op (kept FP32 whole).
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from trtforge.errors import PrecisionError
from trtforge.precision_rules.plan import RuleResult, producer

BETWEEN = ("Mul", "Div", "Add", "Sub", "Where")
MAX_DEPTH = 6


def _is_constant(t) -> bool:
    p = producer(t)
    return isinstance(t, gs.Constant) or (p is not None and p.op == "Constant")


def _next_towards_matmul(node: gs.Node) -> gs.Node | None:
    """Of a scale/mask op's operands, the activation (the other is the scale or the mask);
    prefer the one that itself comes from a MatMul or another scale/mask op."""
    operands = node.inputs[1:] if node.op == "Where" else node.inputs
    candidates = [producer(t) for t in operands if producer(t) is not None and not _is_constant(t)]
    for p in candidates:
        if p.op in ("MatMul", *BETWEEN):
            return p
    return candidates[0] if candidates else None


def _score_chain(softmax: gs.Node) -> tuple[list[gs.Node] | None, str]:
    """Walk back from a Softmax to its score MatMul; return the chain or why it is not one."""
    chain = [softmax]
    node = producer(softmax.inputs[0])
    for _ in range(MAX_DEPTH):
        if node is None:
            return None, "its input is a graph input, not a MatMul"
        if node.op == "MatMul":
            a, b = node.inputs[:2]
            if _is_constant(a) and _is_constant(b):
                return None, f"MatMul '{node.name}' multiplies two constants"
            return chain + [node], f"score MatMul '{node.name}'"
        if node.op not in BETWEEN:
            return None, (f"its input comes from {node.op} '{node.name}', not a MatMul with a "
                          "transposed operand (through scale or mask)")
        chain.append(node)
        node = _next_towards_matmul(node)
    return None, f"no MatMul within {MAX_DEPTH} ops of the Softmax"


class AttentionScoreRule:
    name = "attention_score"

    def __init__(self, mode: str = "all", threshold: float | None = None):
        if mode not in ("all",):
            raise PrecisionError(f"attention_score mode '{mode}' is not supported yet; use 'all'",
                                 where="precision.rules.attention_score.mode")
        self.mode = mode

    def select(self, graph: gs.Graph) -> RuleResult:
        result = RuleResult(self.name)
        for node in graph.nodes:
            if node.op == "Attention":
                result.matched[node.name] = "ONNX Attention op (scores inside)"
            if node.op != "Softmax":
                continue
            chain, why = _score_chain(node)
            if chain is None:
                result.near_misses.append({"node": node.name, "reason": f"Softmax: {why}"})
                continue
            for n in chain:
                result.matched[n.name] = f"attention score chain ending in Softmax '{node.name}' ({why})"
        return result
