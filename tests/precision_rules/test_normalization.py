"""The normalisation rule: fused ops, decomposed LayerNorm and RMSNorm variance paths, near misses."""

from __future__ import annotations

from tests.precision_rules.helpers import HEADER, graph_of
from trtforge.precision_rules.normalization import NormalizationRule

LAYERNORM = (
    HEADER
    + """
g (float[2,8] x) => (float[2,8] y) <float[1] two = {2}, float[1] eps = {0.00001}> {
    [mu] mu = ReduceMean <axes = [-1]> (x)
    [centre] d = Sub (x, mu)
    [square] sq = Pow (d, two)
    [var] v = ReduceMean <axes = [-1]> (sq)
    [addeps] ve = Add (v, eps)
    [root] sd = Sqrt (ve)
    [norm] y = Div (d, sd)
}"""
)

RMSNORM = (
    HEADER
    + """
g (float[2,8] x) => (float[2,8] y) <float[1] eps = {0.00001}> {
    [square] sq = Mul (x, x)
    [var] v = ReduceMean <axes = [-1]> (sq)
    [addeps] ve = Add (v, eps)
    [root] sd = Sqrt (ve)
    [inv] r = Reciprocal (sd)
    [scale] y = Mul (x, r)
}"""
)

FUSED = (
    '<ir_version: 8, opset_import: ["" : 17]>\n'
    + """
g (float[2,8] x, float[8] w, float[8] b) => (float[2,8] y) {
    [ln] y = LayerNormalization <axis = -1> (x, w, b)
}"""
)

NOT_A_NORM = (
    HEADER
    + """
g (float[2,8] x) => (float[2,8] y, float[2,1] v) <float[1] two = {2}, float[1] three = {3}> {
    [cube] c = Pow (x, three)
    [square] sq = Pow (x, two)
    [var] v = ReduceMean <axes = [-1]> (sq)
    [other] y = Add (x, c)
}"""
)


def test_decomposed_layernorm_keeps_mean_centring_and_variance_path():
    result = NormalizationRule().select(graph_of(LAYERNORM))
    assert set(result.matched) == {"mu", "centre", "square", "var", "addeps", "root", "norm"}


def test_decomposed_rmsnorm_with_reciprocal():
    result = NormalizationRule().select(graph_of(RMSNORM))
    assert set(result.matched) == {"square", "var", "addeps", "root", "inv"}


def test_fused_ops_and_switches():
    assert set(NormalizationRule().select(graph_of(FUSED)).matched) == {"ln"}
    assert NormalizationRule(fused=False).select(graph_of(FUSED)).matched == {}


def test_near_miss_reports_the_broken_link():
    result = NormalizationRule().select(graph_of(NOT_A_NORM))
    assert result.matched == {}
    assert result.near_misses == [
        {"node": "square", "reason": "Pow (square): ReduceMean 'var' is not followed by Add(eps)"}
    ]
