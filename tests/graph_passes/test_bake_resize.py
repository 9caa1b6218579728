"""bake_resize against torch.nn.functional.interpolate (the caller view's own code) for nearest,
linear and cubic, both align_corners conventions, scale factors and target sizes."""

import numpy as np
import pytest

from tests.graph_passes.helpers import apply, ops, ort_run
from trtforge.data.transforms import parse
from trtforge.errors import PassError
from trtforge.export.caller_view import caller_view
from trtforge.graph_passes.bake_resize import BakeResizePass

HEAD = '<ir_version: 10, opset_import: ["" : 20]>\n'
MODEL = (
    HEAD
    + """
g (float[1,2,5,7] x) => (float[1,2,5,7] y) {
  y = Neg(x)
}"""
)
CASES = [
    {"mode": "nearest", "scale": 2},
    {"mode": "nearest", "scale": 1.5},
    {"mode": "nearest", "size": [9, 4]},
    {"mode": "linear", "scale": 4, "align_corners": False},
    {"mode": "linear", "scale": 2.5, "align_corners": True},
    {"mode": "linear", "size": [8, 3], "align_corners": False},
    {"mode": "linear", "size": [11, 13], "align_corners": True},
    {"mode": "cubic", "scale": 2, "align_corners": False},
    {"mode": "cubic", "scale": 3, "align_corners": True},
    {"mode": "cubic", "size": [6, 10], "align_corners": False},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_torch_interpolate(case):
    step = {"name": "bake_resize", "output": "y", **case}
    t = parse(step, "test")
    before, after, modified, _ = apply(MODEL, BakeResizePass(**{k: v for k, v in step.items() if k != "name"}))
    assert modified and ops(after)[-1] == "Resize"
    x = np.random.default_rng(0).uniform(-1, 1, size=(1, 2, 5, 7)).astype(np.float32)
    y = ort_run(before, {"x": x})["y"]
    _, want = caller_view([t], {"x": x}, {"y": y}, "m")
    got = ort_run(after, {"x": x})["y"]
    assert got.shape == want["y"].shape
    np.testing.assert_allclose(got, want["y"], rtol=1e-5, atol=1e-5)


def test_output_needs_a_shape_of_rank_3_or_more():
    with pytest.raises(PassError, match="shape of rank >= 3"):
        apply(HEAD + "g (float[3] x) => (float[3] y) { y = Neg(x) }", BakeResizePass(output="y", scale=2))


def test_unknown_output_names_the_outputs():
    with pytest.raises(PassError, match="its outputs: y"):
        apply(MODEL, BakeResizePass(output="nope", scale=2))


def test_made_in_python_without_scale_or_size_is_a_pass_error():
    """The manifest refuses it (io_transforms); a pass made in Python got `int * None` before
    (found by mypy's None checks)."""
    with pytest.raises(PassError, match="needs scale = S or size"):
        apply(MODEL, BakeResizePass(output="y"))
