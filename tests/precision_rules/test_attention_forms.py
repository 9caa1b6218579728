"""The attention forms of issue 14 as small ONNX graphs: the structural walk from the Softmax finds
the score MatMul(s) through window reshapes, bias, masks, casts and relative-position gathers;
FP16-saturated masks are kept FP32 and widened by the realiser; a projection stays a near miss."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from tests.precision_rules.helpers import HEADER, graph_of
from trtforge.precision_rules.attention_score import AttentionScoreRule
from trtforge.precision_rules.cast_realizer import realize_casts

# Swin: windows (4, 2 heads, 4 tokens), scale, relative-position bias, window reshape, shifted mask
SWIN = (
    HEADER
    + """
swin (float[4,2,4,8] q, float[4,2,4,8] k, float[4,2,4,8] v) => (float[4,2,4,8] y) {
    kt = Transpose <perm = [0, 1, 3, 2]> (k)
    s = MatMul (q, kt)
    scale = Constant <value = float {0.35}> ()
    sc = Mul (s, scale)
    bias = Constant <value = float[1,2,4,4] {0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3}> ()
    b = Add (sc, bias)
    shape5 = Constant <value = int64[5] {1, 4, 2, 4, 4}> ()
    w = Reshape (b, shape5)
    mask = Constant <value = float[1,4,1,4,4] {0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,-100,0,-100,0,-100,0,-100,0,-100,0,-100,0,-100,0,-100,-100,0,-100,0,-100,0,-100,0,-100,0,-100,0,-100,0,-100,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0}> ()
    m = Add (w, mask)
    shape4 = Constant <value = int64[4] {4, 2, 4, 4}> ()
    r = Reshape (m, shape4)
    p = Softmax <axis = -1> (r)
    y = MatMul (p, v)
}"""
)

# BLOOM / LLaMA eager: 3-D scores reshaped to 4-D, Where(causal, scores, finfo(fp16).min), Softmax in FP32
CAUSAL = (
    HEADER
    + """
causal (float[2,4,8] q, float[2,8,4] kt, float[2,4,8] v) => (float[1,2,4,8] y) {
    s = MatMul (q, kt)
    shape4 = Constant <value = int64[4] {1, 2, 4, 4}> ()
    r = Reshape (s, shape4)
    keep = Constant <value = bool[1,1,4,4] {1,0,0,0,1,1,0,0,1,1,1,0,1,1,1,1}> ()
    low = Constant <value = float {-65504}> ()
    m = Where (keep, r, low)
    m32 = Cast <to = 1> (m)
    p32 = Softmax <axis = -1> (m32)
    p = Cast <to = 10> (p32)
    shape3 = Constant <value = int64[3] {2, 4, 4}> ()
    p3 = Reshape (p, shape3)
    y3 = MatMul (p3, v)
    shapey = Constant <value = int64[4] {1, 2, 4, 8}> ()
    y = Reshape (y3, shapey)
}"""
)

# GPT-2/CLIP style padding mask from an input: Add(scores, Where(pad, 0, -65504)) off the chain
PADDING = (
    HEADER
    + """
pad (float[1,2,4,8] q, float[1,2,8,4] kt, bool[1,1,1,4] pad, float[1,2,4,8] v) => (float[1,2,4,8] y) {
    s = MatMul (q, kt)
    zero = Constant <value = float {0}> ()
    low = Constant <value = float {-65504}> ()
    mask = Where (pad, zero, low)
    m = Add (s, mask)
    p = Softmax <axis = -1> (m)
    y = MatMul (p, v)
}"""
)

# DeBERTa: content-to-position scores, Q times a folded position-key table, gathered and added
DEBERTA = (
    HEADER
    + """
deb (float[2,4,8] q, float[2,8,4] kt, int64[2,4,4] idx, float[2,4,8] v) => (float[2,4,8] y) {
    s = MatMul (q, kt)
    posk = Constant <value = float[8,6] {1,2,3,4,5,6,1,2,3,4,5,6,1,2,3,4,5,6,1,2,3,4,5,6,1,2,3,4,5,6,1,2,3,4,5,6,1,2,3,4,5,6,1,2,3,4,5,6}> ()
    c2p = MatMul (q, posk)
    g = GatherElements <axis = -1> (c2p, idx)
    a = Add (s, g)
    p = Softmax <axis = -1> (a)
    y = MatMul (p, v)
}"""
)

# attention pooling: a learned query (constant) against keys
POOLING = (
    HEADER
    + """
pool (float[1,2,8,4] kt, float[1,2,4,8] v) => (float[1,2,1,8] y) {
    query = Constant <value = float[1,2,1,8] {1,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0}> ()
    s = MatMul (query, kt)
    p = Softmax <axis = -1> (s)
    y = MatMul (p, v)
}"""
)


def _ops(graph, names):
    ops = {n.name: n.op for n in graph.nodes}
    return sorted(ops[n] for n in names)


def test_swin_window_reshapes_bias_and_shifted_mask_are_one_chain():
    g = graph_of(SWIN)
    result = AttentionScoreRule().select(g)
    assert _ops(g, result.matched) == ["Add", "Add", "MatMul", "Mul", "Reshape", "Reshape", "Softmax"]
    assert not result.near_misses


def test_reshaped_3d_scores_with_where_mask_and_fp32_softmax():
    g = graph_of(CAUSAL)
    result = AttentionScoreRule().select(g)
    assert _ops(g, result.matched) == ["Cast", "MatMul", "Reshape", "Softmax", "Where"]
    assert "FP16-saturated mask widened" in next(iter(result.matched.values()))


def _mask_constants(graph):
    return [
        c.values
        for n in graph.nodes
        for c in n.inputs
        if isinstance(c, gs.Constant) and c.values.dtype == np.float32 and c.values.size == 1
    ]


def test_a_saturated_mask_is_widened_to_float32_min_in_the_island():
    g = graph_of(CAUSAL)
    casts = realize_casts(g, set(AttentionScoreRule().select(g).matched))
    assert casts["masks_widened"] == 1
    where = next(n for n in g.nodes if n.op == "Where")
    assert where.inputs[2].values.dtype == np.float32
    assert float(where.inputs[2].values) == float(np.finfo(np.float32).min)


def test_a_padding_mask_built_from_an_input_joins_the_island_and_is_widened():
    g = graph_of(PADDING)
    result = AttentionScoreRule().select(g)
    assert _ops(g, result.matched) == ["Add", "MatMul", "Softmax", "Where"]
    assert any("mask of Softmax" in r for r in result.matched.values())
    casts = realize_casts(g, set(result.matched))
    assert casts["masks_widened"] == 1
    where = next(n for n in g.nodes if n.op == "Where")
    assert np.dtype(where.outputs[0].dtype) == np.float32
    assert float(where.inputs[2].values) == float(np.finfo(np.float32).min)


def test_relative_position_scores_with_a_folded_table_are_score_matmuls():
    g = graph_of(DEBERTA)
    result = AttentionScoreRule().select(g)
    assert _ops(g, result.matched) == ["Add", "GatherElements", "MatMul", "MatMul", "Softmax"]
    assert "1 more score MatMul" in next(iter(result.matched.values()))


def test_a_learned_query_is_attention_pooling_not_a_projection():
    g = graph_of(POOLING)
    result = AttentionScoreRule().select(g)
    assert _ops(g, result.matched) == ["MatMul", "Softmax"]
    assert "learned query" in next(iter(result.matched.values()))


def test_auto_with_nothing_hot_warns_nothing():
    from trtforge.precision_rules.plan import PrecisionPlan

    class Cold:
        def score_peaks(self, n_random=0, seed=0):
            return {}.fromkeys(["s", "r", "m", "m32"], 1.0)

        top = score_peaks

    g = graph_of(CAUSAL)
    result = AttentionScoreRule(mode="auto").select(g, Cold())
    assert result.matched == {} and result.empty_ok
    plan = PrecisionPlan()
    plan.add(result, g)
    assert plan.warnings == []


def test_auto_takes_no_mask_for_a_score(tmp_path):
    """A real FP32 run (fp32_probe) of the Swin graph: its shifted-window mask (-100) and a
    saturated causal mask (-65504) are no scores, so with mild scores no block is hot."""
    import onnx

    from tests.precision_rules.helpers import model_of
    from trtforge.precision_rules.fp32_probe import Probe

    for text, feeds in (
        (SWIN, {n: np.full((4, 2, 4, 8), 0.1, np.float16) for n in "qkv"}),
        (
            CAUSAL,
            {
                "q": np.full((2, 4, 8), 0.1, np.float16),
                "kt": np.full((2, 8, 4), 0.1, np.float16),
                "v": np.full((2, 4, 8), 0.1, np.float16),
            },
        ),
    ):
        model = model_of(text)
        onnx.save_model(model, str(tmp_path / "model.onnx"))
        probe = Probe(model, tmp_path, feeds)
        g = graph_of(text)
        assert max(probe.peaks().values()) >= 99  # the masks are in the graph's tensors
        result = AttentionScoreRule(mode="auto", n_random=0).select(g, probe)
        assert result.matched == {} and result.empty_ok, result.near_misses
        hot = AttentionScoreRule(mode="auto", n_random=0, threshold=0.01).select(g, probe)
        assert any(n.startswith("Softmax") for n in hot.matched)


TWO_BLOCKS = (
    HEADER
    + """
two (float[1,2,4,8] q, float[1,2,8,4] kt, float[1,2,4,8] v) => (float[1,2,4,8] y) {
    keep = Constant <value = bool[1,1,4,4] {1,0,0,0,1,1,0,0,1,1,1,0,1,1,1,1}> ()
    low = Constant <value = float {-65504}> ()
    s1 = MatMul (q, kt)
    m1 = Where (keep, s1, low)
    p1 = Softmax <axis = -1> (m1)
    h = MatMul (p1, v)
    s2 = MatMul (h, kt)
    m2 = Where (keep, s2, low)
    p2 = Softmax <axis = -1> (m2)
    y = MatMul (p2, v)
}"""
)


def test_blocks_sharing_one_mask_share_one_widened_copy():
    """Two distinct tensors of one name would be an ill-formed graph (onnx-graphsurgeon warned on
    stdout, which broke `build --json` for multi-layer causal models)."""
    g = graph_of(TWO_BLOCKS)
    casts = realize_casts(g, set(AttentionScoreRule().select(g).matched))
    assert casts["masks_widened"] == 2
    wheres = [n for n in g.nodes if n.op == "Where"]
    assert wheres[0].inputs[2] is wheres[1].inputs[2]
    assert float(wheres[0].inputs[2].values) == float(np.finfo(np.float32).min)
