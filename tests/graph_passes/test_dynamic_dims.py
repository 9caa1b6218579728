"""Graph passes on graphs with named dynamic dims: they stay symbolic, shape folding leaves them
alone, baking a Resize works at any batch, and the meaning check runs at the recorded shapes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.graph_passes.helpers import apply, ort_run
from trtforge.data.transforms import parse
from trtforge.export.caller_view import caller_view
from trtforge.graph_passes.bake_resize import BakeResizePass
from trtforge.graph_passes.bake_transpose import BakeTransposePass
from trtforge.graph_passes.fold_static_shapes import FoldStaticShapesPass
from trtforge.graph_passes.meaning import feeds_for

HEAD = '<ir_version: 10, opset_import: ["" : 20]>\n'
# batch and height dynamic: the Shape of x must stay a runtime Shape, its static tail may not hide it
MODEL = (
    HEAD
    + """
g (float[batch,2,height,7] x) => (float[batch,2,height,7] y, int64[4] s) {
  y = Neg(x)
  s = Shape(x)
}"""
)


def dims(model, which="output", i=0):
    vi = (model.graph.output if which == "output" else model.graph.input)[i]
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def x_at(batch, height, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(batch, 2, height, 7)).astype(np.float32)


def test_fold_static_shapes_does_not_fold_a_dynamic_shape():
    before, after, modified, _ = apply(MODEL, FoldStaticShapesPass())
    assert "Shape" in [n.op_type for n in after.graph.node]
    assert dims(after, "input") == ["batch", 2, "height", 7]
    for b, h in ((1, 3), (4, 5)):
        assert ort_run(after, {"x": x_at(b, h)})["s"].tolist() == [b, 2, h, 7]


@pytest.mark.parametrize(
    "case",
    [
        {"mode": "nearest", "scale": 2},
        {"mode": "linear", "size": [6, 10]},
        {"mode": "cubic", "scale": 1.5, "align_corners": True},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_bake_resize_with_dynamic_dims_matches_torch_at_each_shape(case):
    step = {"name": "bake_resize", "output": "y", **case}
    _, after, modified, _ = apply(MODEL, BakeResizePass(**{k: v for k, v in step.items() if k != "name"}))
    assert modified and dims(after, "input") == ["batch", 2, "height", 7]
    assert dims(after)[0] != 1 and not isinstance(dims(after)[0], int)  # batch stays symbolic
    for b, h in ((1, 4), (3, 9)):
        x = x_at(b, h)
        _, want = caller_view([parse(step, "test")], {"x": x}, {"y": -x}, "m")
        got = ort_run(after, {"x": x})["y"]
        assert got.shape == want["y"].shape
        np.testing.assert_allclose(got, want["y"], rtol=1e-5, atol=1e-5)


def test_bake_transpose_keeps_dynamic_dims_in_their_new_places():
    _, after, modified, _ = apply(MODEL, BakeTransposePass(input="x", perm=[0, 2, 1, 3]))
    assert modified and dims(after, "input") == ["batch", "height", 2, 7]
    x = x_at(2, 5)
    got = ort_run(after, {"x": np.ascontiguousarray(x.transpose(0, 2, 1, 3))})["y"]
    np.testing.assert_array_equal(got, -x)


def test_meaning_check_feeds_the_recorded_set_at_its_concrete_shape():
    model = apply(MODEL)[0]
    recorded = {"x": x_at(4, 6)}
    feeds = feeds_for(model, [recorded])
    assert feeds["x"] is recorded["x"]  # batch 4, height 6 fit the symbolic dims
    wrong_static = {"x": x_at(4, 6)[..., :5]}  # a static dim (7) that differs is not that input
    assert feeds_for(model, [wrong_static])["x"].shape == (1, 2, 1, 7)
