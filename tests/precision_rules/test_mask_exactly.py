"""Issue 24, point 5: masks, exactly.

The mask widener changes only constants on a Softmax's mask path: at 7fe7866 it widened every
constant holding -65504 that an FP32 node read, so a clamp bound of -65504 in an FP32 island
(kept FP32 by another rule) became float32's minimum and changed what the island computes.
`activation_range` leaves mask entries out as `attention_score`'s `auto` does: at 7fe7866 an
additive mask of -65504 (exact in FP16) made it keep the mask's Add FP32."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from tests.precision_rules.helpers import HEADER, graph_of, model_of
from trtforge.precision_rules.activation_range import ActivationRangeRule
from trtforge.precision_rules.attention_score import AttentionScoreRule
from trtforge.precision_rules.cast_realizer import realize_casts
from trtforge.precision_rules.fp32_probe import Probe
from trtforge.precision_rules.score_graph import const_values

# an attention block with a padding mask built from an input, and beside it a clamp at -65504
# (torch.clamp(h, min=finfo(float16).min)) that an op_type rule keeps FP32
BOTH = (
    HEADER
    + """
g (float[1,2,4,8] q, float[1,2,8,4] kt, bool[1,1,1,4] pad, float[1,2,4,8] v, float[4] h) => (float[1,2,4,8] y, float[4] c) {
    s = MatMul (q, kt)
    zero = Constant <value = float {0}> ()
    low = Constant <value = float {-65504}> ()
    mask = Where (pad, zero, low)
    m = Add (s, mask)
    p = Softmax <axis = -1> (m)
    y = MatMul (p, v)
    floor = Constant <value = float {-65504}> ()
    c = Max (h, floor)
}"""
)


def _value(t) -> float:
    """A constant, or the constant behind the realiser's Cast into the island."""
    if isinstance(t, gs.Constant):
        return float(np.asarray(t.values))
    return float(np.asarray(const_values(t.inputs[0].inputs[0])))


def test_only_the_softmax_mask_is_widened():
    g = graph_of(BOTH)
    fp32 = set(AttentionScoreRule().select(g).matched) | {n.name for n in g.nodes if n.op == "Max"}
    casts = realize_casts(g, fp32)
    assert casts["masks_widened"] == 1  # 7fe7866: 2, the clamp bound too
    where = next(n for n in g.nodes if n.op == "Where")
    assert float(where.inputs[2].values) == float(np.finfo(np.float32).min)
    clamp = next(n for n in g.nodes if n.op == "Max")
    assert _value(clamp.inputs[1]) == -65504.0


# scores near 10, an additive mask input holding the FP16 minimum (as an FP16 export's
# extended attention mask does), and a real activation beyond the FP16 range
MASKED = (
    HEADER
    + """
g (float[1,4,8] q, float[1,8,4] kt, float[1,1,4] mask, float[4] x) => (float[1,4,4] p, float[4] y) <float[1] k = {30000}, float[1] off = {-50000}> {
    [scores] s = MatMul (q, kt)
    [add_mask] m = Add (s, mask)
    [softmax] p = Softmax <axis = -1> (m)
    [scale] big = Mul (x, k)
    [shift] y = Add (big, off)
}"""
)


def test_activation_range_ignores_mask_entries_but_not_real_negative_overflow():
    feeds = {
        "q": np.linspace(-1, 1, 32, dtype=np.float16).reshape(1, 4, 8),
        "kt": np.linspace(-1, 1, 32, dtype=np.float16).reshape(1, 8, 4),
        "mask": np.array([[[0, 0, -65504, -65504]]], np.float16),
        "x": np.linspace(-1, 1, 4).astype(np.float16),
    }
    probe = Probe(model_of(MASKED), None, feeds)
    result = ActivationRangeRule(fraction=0.5, n_random=0).select(graph_of(MASKED), probe)
    # 7fe7866: add_mask and softmax kept (their mask entries reach 65504 in magnitude)
    assert "add_mask" not in result.matched and "softmax" not in result.matched, result.matched
    # x * 3e4 - 5e4 reaches -8e4: a real overflow off any mask path, still kept
    assert "shift" in result.matched and "reaches 7.998e+04" in result.matched["shift"]
