"""The attention-score rule on hand-written layouts and on real torch.onnx exporter output."""

from __future__ import annotations

import pytest

from tests.precision_rules.helpers import HEADER, graph_of
from trtforge.errors import PrecisionError
from trtforge.precision_rules.attention_score import AttentionScoreRule

FOUR_D = (
    HEADER
    + """
attn (float[1,2,8,4] q, float[1,2,8,4] k, float[1,2,8,4] v, float[1,1,8,8] mask) => (float[1,2,8,4] y) {
    kt = Transpose <perm = [0, 1, 3, 2]> (k)
    s = MatMul (q, kt)
    half = Constant <value = float {0.5}> ()
    sc = Div (s, half)
    m = Add (sc, mask)
    p = Softmax <axis = -1> (m)
    y = MatMul (p, v)
}"""
)

THREE_D_PRETRANSPOSED = (
    HEADER
    + """
attn (float[8,8,4] q, float[8,4,8] kt, float[8,8,4] v) => (float[8,8,4] y) {
    s = MatMul (q, kt)
    scale = Constant <value = float {0.5}> ()
    sc = Mul (scale, s)
    p = Softmax <axis = -1> (sc)
    y = MatMul (p, v)
}"""
)

CLASSIFIER = (
    HEADER
    + """
head (float[1,16] x) => (float[1,10] y) {
    w = Constant <value = float[16,10] {0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0}> ()
    l = MatMul (x, w)
    r = Relu (x)
    y = Softmax <axis = -1> (l)
    y2 = Softmax <axis = -1> (r)
}"""
)


def test_four_d_with_transpose_scale_and_mask_matches_the_whole_chain():
    result = AttentionScoreRule().select(graph_of(FOUR_D))
    ops = {n.name: n.op for n in graph_of(FOUR_D).nodes}
    assert sorted(ops[n] for n in result.matched) == ["Add", "Div", "MatMul", "Softmax"]
    assert all("K^T by Transpose" in r for r in result.matched.values())
    assert not result.near_misses


def test_three_d_pre_transposed_k_matches_without_a_transpose():
    result = AttentionScoreRule().select(graph_of(THREE_D_PRETRANSPOSED))
    assert len(result.matched) == 3  # MatMul, Mul, Softmax; the .V MatMul stays FP16
    assert all("pre-transposed" in r for r in result.matched.values())


def test_near_misses_say_why():
    result = AttentionScoreRule().select(graph_of(CLASSIFIER))
    assert result.matched == {}
    reasons = " | ".join(m["reason"] for m in result.near_misses)
    assert "weight operand" in reasons and "projection" in reasons
    assert "comes from Relu" in reasons


def test_unknown_mode_is_a_user_error():
    with pytest.raises(PrecisionError, match="mode 'fastest'"):
        AttentionScoreRule(mode="fastest")


class FakeProbe:
    """A stand-in for fp32_probe.Probe with fixed peaks (the real one is tested on exports below)."""

    def __init__(self, peaks):
        self._peaks = peaks

    def peaks(self, n_random=0, seed=0):
        return self._peaks

    score_peaks = top = peaks


def test_auto_keeps_only_hot_blocks():
    g = graph_of(FOUR_D)
    cold = AttentionScoreRule(mode="auto").select(g, FakeProbe({"s": 8.0, "sc": 4.0, "m": 4.0}))
    assert cold.matched == {} and "only 4" in cold.near_misses[0]["reason"]
    hot = AttentionScoreRule(mode="auto", threshold=3.0).select(g, FakeProbe({"s": 8.0, "sc": 4.0, "m": 4.0}))
    assert len(hot.matched) == 4


# --- real exporter output --------------------------------------------------------------------------

torch = pytest.importorskip("torch")


def _export(module, *args, opset=18):
    import io

    import onnx

    buf = io.BytesIO()
    torch.onnx.export(module.eval(), args, buf, dynamo=True, opset_version=opset)
    return onnx.load_from_string(buf.getvalue())


def _graph(model):
    import onnx
    import onnx_graphsurgeon as gs

    return gs.import_onnx(onnx.shape_inference.infer_shapes(model))


class Bmm3d(torch.nn.Module):
    def forward(self, q, k, v):  # (B*H, N, d), K^T by transpose
        return torch.softmax(torch.bmm(q, k.transpose(1, 2)) / 2.0, dim=-1) @ v


class PreTransposed(torch.nn.Module):
    def forward(self, q, kt, v):
        return torch.softmax((q @ kt) * 0.5, dim=-1) @ v


class Sdpa(torch.nn.Module):
    def forward(self, q, k, v, mask):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _rand(*shape):
    return torch.randn(*shape)


@pytest.mark.parametrize(
    "module,args,layout",
    [
        (Bmm3d(), (_rand(4, 8, 4), _rand(4, 8, 4), _rand(4, 8, 4)), "Transpose"),
        (PreTransposed(), (_rand(1, 2, 8, 4), _rand(1, 2, 4, 8), _rand(1, 2, 8, 4)), "pre-transposed"),
        (Sdpa(), (_rand(1, 2, 8, 4), _rand(1, 2, 8, 4), _rand(1, 2, 8, 4), _rand(1, 1, 8, 8)), ""),
    ],
)
def test_matches_torch_onnx_dynamo_exports(module, args, layout):
    result = AttentionScoreRule().select(_graph(_export(module, *args)))
    softmaxes = [n for n in result.matched if "oftmax" in n]
    assert len(softmaxes) == 1, (result.matched, result.near_misses)
    assert any("MatMul" in r for r in result.matched.values())
    assert layout in next(iter(result.matched.values()))


def test_sdpa_decomposition_keeps_prescales_out_of_the_chain():
    g = _graph(_export(Sdpa(), _rand(1, 2, 8, 4), _rand(1, 2, 8, 4), _rand(1, 2, 8, 4), _rand(1, 1, 8, 8)))
    result = AttentionScoreRule().select(g)
    ops = {n.name: n.op for n in g.nodes}
    # score MatMul, mask Add and Softmax; the .V MatMul is not in it
    assert sorted(ops[n] for n in result.matched).count("MatMul") == 1
    assert "Softmax" in {ops[n] for n in result.matched}


def test_onnx_attention_op_at_opset_23_is_kept_whole():
    try:
        model = _export(Sdpa(), _rand(1, 2, 8, 4), _rand(1, 2, 8, 4), _rand(1, 2, 8, 4), _rand(1, 1, 8, 8), opset=23)
    except Exception as e:  # exporter too old for opset 23
        pytest.skip(f"torch.onnx cannot export opset 23 here: {type(e).__name__}")
    g = _graph(model)
    if not any(n.op == "Attention" for n in g.nodes):
        pytest.skip("this torch.onnx decomposes SDPA even at opset 23")
    result = AttentionScoreRule().select(g)
    assert any("Attention op" in r for r in result.matched.values())


def test_softmax_rule_keeps_scale_and_softmax_but_not_the_matmul():
    from trtforge.precision_rules.softmax import SoftmaxRule

    g = graph_of(FOUR_D)
    ops = {n.name: n.op for n in g.nodes}
    result = SoftmaxRule().select(g)
    assert sorted(ops[n] for n in result.matched) == ["Add", "Div", "Softmax"]
    assert "use attention_score" in result.near_misses[0]["reason"]
    assert sorted(ops[n] for n in SoftmaxRule(with_scale=False).select(g).matched) == ["Softmax"]


class AttentionPool(torch.nn.Module):
    """A learned query attending over tokens (CLIP's AttentionPool2d, SigLIP's MAP head)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.query = torch.nn.Parameter(torch.randn(1, 1, 16))
        self.attn = torch.nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x):
        return self.attn(self.query.expand(x.shape[0], -1, -1), x, x, need_weights=False)[0]


def test_attention_pooling_with_a_learned_query_is_a_score_chain():
    g = _graph(_export(AttentionPool().eval(), _rand(1, 8, 16)))
    result = AttentionScoreRule().select(g)
    assert not result.near_misses, result.near_misses
    assert sum(1 for n in g.nodes if n.name in result.matched and n.op == "Softmax") == 1
    assert sum(1 for n in g.nodes if n.name in result.matched and n.op == "MatMul") == 1
