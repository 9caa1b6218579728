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
from trtforge.precision_rules.plan import FP16_MAX, RuleResult
from trtforge.precision_rules.score_graph import ScoreChain, find_chain, saturated_masks, score_chain

BETWEEN = ("Mul", "Div", "Add", "Sub", "Where")  # the scale and mask ops the softmax rule keeps too
__all__ = ["AttentionScoreRule", "BETWEEN", "score_chain"]


class AttentionScoreRule:
    name = "attention_score"

    def __init__(
        self, mode: str = "all", threshold: float = 11.0, range_fraction: float = 0.5, n_random: int = 2, seed: int = 0
    ):
        if mode not in ("all", "auto"):
            raise PrecisionError(
                f"attention_score mode '{mode}' is not one of 'all', 'auto'",
                where="precision.rules.attention_score.mode",
            )
        self.mode, self.threshold, self.range_fraction = mode, float(threshold), float(range_fraction)
        self.n_random, self.seed = int(n_random), int(seed)

    def select(self, graph: gs.Graph, probe=None) -> RuleResult:
        result = RuleResult(self.name)
        peaks = (
            (probe.score_peaks(self.n_random, self.seed), probe.top(self.n_random, self.seed))
            if self.mode == "auto"
            else None
        )
        for node in graph.nodes:
            if node.op == "Attention":
                result.matched[node.name] = "ONNX Attention op (scores inside)"
                self._keep_masks(result, ScoreChain(node, [node]), node.name)
            if node.op != "Softmax":
                continue
            chain, why = find_chain(node)
            if chain is None:
                result.near_misses.append({"node": node.name, "reason": f"Softmax: {why}"})
                continue
            if peaks is not None:
                keep, why_auto = self._hot(chain, peaks)
                if not keep:
                    result.near_misses.append({"node": node.name, "reason": f"Softmax: {why_auto}", "cold": True})
                    continue
                why = f"{why}; {why_auto}"
            for n in chain.nodes:
                result.matched[n.name] = f"attention score chain ending in Softmax '{node.name}' ({why})"
            self._keep_masks(result, chain, node.name)
        if not result.matched and all(m.get("cold") for m in result.near_misses):
            result.empty_ok = "no attention block is hot" if result.near_misses else "no attention block"
        return result

    @staticmethod
    def _keep_masks(result: RuleResult, chain: ScoreChain, anchor: str) -> None:
        for n in chain.mask_nodes or saturated_masks(chain):
            result.matched.setdefault(
                n.name, f"mask of Softmax '{anchor}' holding the FP16 minimum (-65504), widened to float32's minimum"
            )

    def _hot(self, chain: ScoreChain, peaks: tuple[dict, dict]) -> tuple[bool, str]:
        """The largest logit (masks of -100 or -65504 are no logits exp() overflows on) and the
        score tensors' magnitude without mask entries (fp32_probe)."""
        magnitude, top = peaks
        logits = top.get(chain.softmax.inputs[0].name, float("inf"))
        widest = max(magnitude.get(n.outputs[0].name, float("inf")) for n in chain.nodes[1:])
        if logits >= self.threshold:
            return True, f"FP32 scores reach {logits:.4g} >= threshold {self.threshold:g}"
        if widest >= self.range_fraction * FP16_MAX:
            return True, f"a score tensor reaches {widest:.4g}, near the FP16 limit"
        return False, (
            f"FP32 scores reach only {logits:.4g} (< threshold {self.threshold:g}) and "
            f"{widest:.4g} before scaling; left FP16 for the fused attention kernel"
        )
