"""bake_transpose at inputs and outputs with several permutations, and bake_preprocess, checked
against the caller view (numpy / torch) that the verify stage uses."""

import numpy as np
import pytest

from tests.graph_passes.helpers import apply, ops, ort_run
from trtforge.data.transforms import parse
from trtforge.errors import ManifestError
from trtforge.export.caller_view import caller_view, preprocessed_inputs
from trtforge.graph_passes.bake_preprocess import BakePreprocessPass
from trtforge.graph_passes.bake_transpose import BakeTransposePass

HEAD = '<ir_version: 10, opset_import: ["" : 20]>\n'
SHAPES = {3: [2, 3, 4], 4: [2, 3, 4, 5]}
PERMS = [[0, 3, 1, 2], [0, 2, 3, 1], [3, 2, 1, 0], [1, 0, 2], [2, 0, 1]]


def model_of(rank: int, dtype: str = "float") -> str:
    dims = ",".join(map(str, SHAPES[rank]))
    return HEAD + f"g ({dtype}[{dims}] x) => ({dtype}[{dims}] y) {{ y = Neg(x) }}"


@pytest.mark.parametrize("perm", PERMS, ids=str)
@pytest.mark.parametrize("end", ["input", "output"])
def test_transpose_matches_caller_view(perm, end):
    step = {"name": "bake_transpose", end: "x" if end == "input" else "y", "perm": perm}
    before, after, modified, _ = apply(model_of(len(perm)), BakeTransposePass(perm, **{end: step[end]}))
    assert modified and "Transpose" in ops(after)
    x = np.random.default_rng(1).normal(size=SHAPES[len(perm)]).astype(np.float32)
    ref = ort_run(before, {"x": x})
    c_in, c_ref = caller_view([parse(step, "t")], {"x": x}, ref, "m")
    got = ort_run(after, c_in)
    np.testing.assert_array_equal(got["y"], c_ref["y"])
    assert [d.dim_value for d in after.graph.input[0].type.tensor_type.shape.dim] == list(c_in["x"].shape)


def test_transpose_rank_mismatch_is_a_pass_error():
    from trtforge.errors import PassError

    with pytest.raises(PassError, match="rank 3"):
        apply(model_of(3), BakeTransposePass([0, 3, 1, 2], input="x"))


def test_transpose_made_in_python_without_an_end_is_a_pass_error():
    """The manifest refuses it (io_transforms); a pass made in Python got a TypeError inside the
    graph lookup before (found by mypy's None checks)."""
    from trtforge.errors import PassError

    with pytest.raises(PassError, match="needs input = NAME or output = NAME"):
        apply(model_of(4), BakeTransposePass([0, 3, 1, 2]))


@pytest.mark.parametrize("dtype,np_dtype", [("float16", np.float16), ("float", np.float32)])
@pytest.mark.parametrize("rank", [3, 4])
def test_preprocess_matches_torch(rank, dtype, np_dtype):
    step = {"name": "bake_preprocess", "input": "x", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    t = parse(step, "t")
    shape = [1, 3, 8, 6] if rank == 4 else [3, 8, 6]
    dims = ",".join(map(str, shape))
    text = HEAD + f"g ({dtype}[{dims}] x) => ({dtype}[{dims}] y) {{ y = Neg(x) }}"
    before, after, modified, _ = apply(text, BakePreprocessPass("x", t["mean"], t["std"]))
    assert modified
    x0 = np.zeros(shape, np_dtype)
    model_in, images = preprocessed_inputs([t], {"x": x0}, seed=3, module="m")
    assert images["x"].dtype == np.uint8 and images["x"].shape[-1] == 3
    ref = ort_run(before, model_in)
    c_in, c_ref = caller_view([t], model_in, ref, "m", images)
    got = ort_run(after, c_in)
    assert after.graph.input[0].type.tensor_type.elem_type == 2  # uint8
    tol = 4e-3 if np_dtype == np.float16 else 1e-5  # FP16: the affine runs in the model's dtype
    np.testing.assert_allclose(got["y"].astype(np.float32), c_ref["y"].astype(np.float32), rtol=tol, atol=tol)


def test_preprocess_manifest_errors():
    with pytest.raises(ManifestError, match="std must not contain 0"):
        parse({"name": "bake_preprocess", "input": "x", "mean": [0.5], "std": [0]}, "w")
    with pytest.raises(ManifestError, match="list of numbers"):
        parse({"name": "bake_preprocess", "input": "x", "mean": "0.5", "std": [1]}, "w")
