"""op_type and name_pattern rules."""

from __future__ import annotations

import pytest

from tests.precision_rules.helpers import HEADER, graph_of
from trtforge.errors import PrecisionError
from trtforge.precision_rules.name_pattern import NamePatternRule
from trtforge.precision_rules.op_type import OpTypeRule

TEXT = (
    HEADER
    + """
g (float[4] x) => (float[4] y) {
    [block1_exp] e = Exp (x)
    [block1_soft] s = Softmax (e)
    [block2_soft] y = Softmax (s)
}"""
)


def test_op_type():
    assert set(OpTypeRule(["Softmax"]).select(graph_of(TEXT)).matched) == {"block1_soft", "block2_soft"}


def test_name_pattern_and_named_nodes():
    assert set(NamePatternRule(pattern=r"^block1_").select(graph_of(TEXT)).matched) == {"block1_exp", "block1_soft"}
    assert set(NamePatternRule(nodes=["block2_soft"]).select(graph_of(TEXT)).matched) == {"block2_soft"}


def test_missing_named_node_is_an_error_with_a_suggestion():
    with pytest.raises(PrecisionError, match="block2_soft"):
        NamePatternRule(nodes=["block2_sof"]).select(graph_of(TEXT))
