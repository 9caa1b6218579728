"""Attention-score rule: MatMul(Q, K^T) -> optional scale (Mul/Div) -> optional additive mask
(Add/Sub/Where) -> Softmax. The score MatMul, the scale/mask ops and the Softmax stay FP32; the
realiser casts back to FP16 before the .V MatMul.

Why: an FP16 Q.K^T overflows once logits pass ~11 after exp (and 65504 before it); a ViT built in
pure FP16 gave mIoU 0.119 instead of 0.988. Keeping exactly this chain FP32 cost 3.7% speed.

Cases: 3-D and 4-D layouts; K^T by a Transpose node or pre-transposed (K^T produced directly by a
projection); torch's SDPA decomposition (Q and K^T each pre-scaled by sqrt(scale) before the
MatMul: the pre-scales are outside the chain and stay FP16, their outputs are in range by
construction when the scores are); ONNX's own Attention op (opset 23), kept FP32 whole.
A score MatMul must multiply two activations: a MatMul with a weight operand is a projection
(e.g. a classifier Linear before a Softmax), reported as a near miss.

Modes: `all` keeps every block; `auto` keeps only blocks whose FP32 scores reach `threshold`
(the Softmax input, default 11: exp(11.09) = 65504) or whose chain tensors come within
`range_fraction` of 65504, because FP32 attention blocks TensorRT's fused attention kernels
(unfused attention measured 3-11x slower on an H100, 4-20x with the softmax in FP32).
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from trtforge.errors import PrecisionError
from trtforge.precision_rules.plan import FP16_MAX, RuleResult, producer

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


def _k_layout(matmul: gs.Node) -> str:
    p = producer(matmul.inputs[1])
    return "K^T by Transpose" if p is not None and p.op == "Transpose" else "K^T pre-transposed"


def score_chain(softmax: gs.Node) -> tuple[list[gs.Node] | None, str]:
    """Walk back from a Softmax to its score MatMul; return the chain (Softmax first, MatMul last)
    or why it is not one."""
    chain = [softmax]
    node = producer(softmax.inputs[0])
    for _ in range(MAX_DEPTH):
        if node is None:
            return None, "its input is a graph input, not a MatMul"
        if node.op == "MatMul":
            a, b = node.inputs[:2]
            if _is_constant(a) or _is_constant(b):
                return None, (f"MatMul '{node.name}' has a weight operand: a projection, not Q.K^T "
                              "with a transposed operand")
            return chain + [node], f"score MatMul '{node.name}', {_k_layout(node)}"
        if node.op not in BETWEEN:
            return None, (f"its input comes from {node.op} '{node.name}', not a MatMul with a "
                          "transposed operand (through scale or mask)")
        chain.append(node)
        node = _next_towards_matmul(node)
    return None, f"no MatMul within {MAX_DEPTH} ops of the Softmax"


class AttentionScoreRule:
    name = "attention_score"

    def __init__(self, mode: str = "all", threshold: float = 11.0, range_fraction: float = 0.5,
                 n_random: int = 2, seed: int = 0):
        if mode not in ("all", "auto"):
            raise PrecisionError(f"attention_score mode '{mode}' is not one of 'all', 'auto'",
                                 where="precision.rules.attention_score.mode")
        self.mode, self.threshold, self.range_fraction = mode, float(threshold), float(range_fraction)
        self.n_random, self.seed = int(n_random), int(seed)

    def select(self, graph: gs.Graph, probe=None) -> RuleResult:
        result = RuleResult(self.name)
        peaks = probe.peaks(self.n_random, self.seed) if self.mode == "auto" else None
        for node in graph.nodes:
            if node.op == "Attention":
                result.matched[node.name] = "ONNX Attention op (scores inside)"
            if node.op != "Softmax":
                continue
            chain, why = score_chain(node)
            if chain is None:
                result.near_misses.append({"node": node.name, "reason": f"Softmax: {why}"})
                continue
            if peaks is not None:
                keep, why_auto = self._hot(node, chain, peaks)
                if not keep:
                    result.near_misses.append({"node": node.name, "reason": f"Softmax: {why_auto}"})
                    continue
                why = f"{why}; {why_auto}"
            for n in chain:
                result.matched[n.name] = f"attention score chain ending in Softmax '{node.name}' ({why})"
        return result

    def _hot(self, softmax: gs.Node, chain: list[gs.Node], peaks: dict) -> tuple[bool, str]:
        logits = peaks.get(softmax.inputs[0].name, float("inf"))
        widest = max(peaks.get(n.outputs[0].name, float("inf")) for n in chain[1:])
        if logits >= self.threshold:
            return True, f"FP32 scores reach {logits:.4g} >= threshold {self.threshold:g}"
        if widest >= self.range_fraction * FP16_MAX:
            return True, f"a score tensor reaches {widest:.4g}, near the FP16 limit"
        return False, (f"FP32 scores reach only {logits:.4g} (< threshold {self.threshold:g}) and "
                       f"{widest:.4g} before scaling; left FP16 for the fused attention kernel")
