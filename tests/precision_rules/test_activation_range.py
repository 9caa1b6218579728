"""The activation-range rule with a real FP32 ONNX Runtime run of an FP16 graph."""

from __future__ import annotations

import numpy as np
import pytest

from tests.precision_rules.helpers import HEADER, graph_of, model_of
from trtforge.errors import PrecisionError
from trtforge.graphs.evaluate import widen_to_fp32
from trtforge.precision_rules.activation_range import ActivationRangeRule
from trtforge.precision_rules.fp32_probe import Probe

# x in [-1, 1]: big = x * 3e4 + 1e5 reaches 1.3e5 (inf in FP16); small stays below 10
TEXT = (
    HEADER
    + """
g (float[8] x) => (float[8] y) <float[1] k = {30000}, float[1] off = {50000}, float[1] tiny = {0.00001}> {
    [scale] s = Mul (x, k)
    [shift] big = Add (s, off)
    [shift2] big2 = Add (big, off)
    [shrink] y0 = Mul (big2, tiny)
    [relu] y = Relu (y0)
}"""
)


def test_keeps_nodes_whose_inputs_or_outputs_reach_the_bound():
    probe = Probe(model_of(TEXT), None, {"x": np.linspace(-1, 1, 8).astype(np.float16)})
    result = ActivationRangeRule(fraction=0.5, n_random=2).select(graph_of(TEXT), probe)
    assert set(result.matched) == {"shift", "shift2", "shrink"}
    assert "reaches 1.3e+05" in result.matched["shift2"]
    # s reaches 3e4: within 4x of the 32752 bound -> a near miss, with its value
    assert [m["node"] for m in result.near_misses] == ["scale"]


def test_fraction_moves_the_bound():
    probe = Probe(model_of(TEXT), None, {"x": np.linspace(-1, 1, 8).astype(np.float16)})
    assert "scale" in ActivationRangeRule(fraction=0.4).select(graph_of(TEXT), probe).matched


def test_widened_copy_is_all_fp32():
    wide = widen_to_fp32(model_of(TEXT))
    assert all(t.data_type == 1 for t in wide.graph.initializer)
    assert wide.graph.input[0].type.tensor_type.elem_type == 1


def test_bad_fraction_and_missing_inputs_are_user_errors():
    with pytest.raises(PrecisionError, match="fraction"):
        ActivationRangeRule(fraction=2)
    with pytest.raises(PrecisionError, match="example inputs"):
        ActivationRangeRule().select(graph_of(TEXT), None)
