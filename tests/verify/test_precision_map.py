"""Which block a node belongs to, from its scopes (the per-block FP16/FP32 map of the report)."""

from __future__ import annotations

import pytest

from trtforge.verify.precision_map import block_of


@pytest.mark.parametrize(
    "scopes,block",
    [
        (["", "blocks", "blocks.3", "blocks.3.mlp", "blocks.3.mlp.0", "linear"], "blocks.3"),
        (["", "embed", "conv2d"], "embed"),
        (["", "add"], "(top level)"),
        ([], "(top level)"),
        # the exporter's own scope is never a block name (issue 29: report.html showed it)
        (["", "_empty_nn_module_stack", "add"], "(top level)"),
        (["", "_empty_nn_module_stack", "blocks.1", "blocks.1.attn", "mul"], "blocks.1"),
    ],
)
def test_block_of(scopes, block):
    assert block_of(scopes) == block
