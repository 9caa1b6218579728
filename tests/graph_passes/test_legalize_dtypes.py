"""legalize_dtypes on ONNX text, one test per case of its docstring: the graph fails onnx's full
check before and passes it after, ONNX Runtime gives what torch's type promotion (`promote`) gives,
graph outputs keep their dtypes, and every change is named."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.conftest import onnx_model, write_model
from tests.graph_passes.helpers import apply, feeds_of, ort_run
from trtforge.errors import PassError
from trtforge.graph_passes.legalize_dtypes import LegalizeDtypesPass, promote
from trtforge.graph_passes.run import run_pipeline
from trtforge.onnx_files import check_full

HEAD = '<ir_version: 10, opset_import: ["" : 20]>\n'


def legalize(text: str):
    """(before, after, the pass) with onnx's full check failing before and passing after."""
    with pytest.raises(onnx.shape_inference.InferenceError):
        check_full(onnx_model(text))
    before, after, modified, pipe = apply(text, LegalizeDtypesPass())
    assert modified and pipe.reports[0].changes == pipe.passes[0].changes()
    check_full(after)
    return before, after, pipe.passes[0]


def same_as_promoted(before, after, exact: bool) -> dict:
    feeds = feeds_of(before)
    want, got = ort_run(promote(before), feeds), ort_run(after, feeds)
    for name in want:
        assert got[name].dtype == want[name].dtype
        if exact:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-3, err_msg=name)
    return got


def node_inputs(model, op: str) -> list[str]:
    return [i for n in model.graph.node if n.op_type == op for i in n.input]


def dtypes(model) -> dict:
    vis = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    return {v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name for v in vis}


def test_fp16_side_of_a_computed_fp32_concat_is_widened():
    # SDXL's text_time embedding: FP16 text embeds, FP32 sinusoidal time ids, one Concat
    before, after, p = legalize(HEAD + """
    g (float16[1,4] text, float16[1,2] ids) => (float16[1,8] y) <float[1,8] cat> {
      i = Cast<to = 1>(ids)
      s = Sin(i)
      c = Cos(i)
      t = Concat<axis = 1>(s, c)
      cat = Concat<axis = 1>(text, t)
      y = Cast<to = 10>(cat)
    }""")
    assert p.exact
    assert p.changes() == ["Concat (output 'cat'): input 'text' float16 -> float32 by a Cast "
                           "('t' is float32, computed: kept float32)"]
    assert dtypes(after)["cat"] == "float32"
    same_as_promoted(before, after, exact=True)


def test_in_range_fp32_constant_is_stored_fp16():
    before, after, p = legalize(HEAD + """
    g (float16[2,3] x) => (float16[2,3] y) {
      k = Constant<value = float[3] {0.5, -2.25, 1000.0}>()
      y = Add(x, k)
    }""")
    assert not p.exact  # rounding to FP16: checked within the folding tolerance
    assert "Cast" not in [n.op_type for n in after.graph.node]
    assert [c for c in p.changes() if "constant 'k' float32 -> float16" in c and "max |v| 1000" in c]
    same_as_promoted(before, after, exact=False)


def test_fp32_constant_beyond_fp16_widens_the_other_side():
    before, after, p = legalize(HEAD + """
    g (float16[2,3] x) => (float16[2,3] y) {
      k = Constant<value = float[1] {100000.0}>()
      m = Mul(x, k)
      y = Relu(m)
    }""")
    assert p.exact
    assert any("input 'x' float16 -> float32" in c and "constant beyond the narrow range" in c for c in p.changes())
    assert dtypes(after)["y"] == "float16"  # a graph output keeps its dtype ...
    assert dtypes(after)["m"] == "float32"  # ... the product, up to 65504 * 1e5, stays FP32 up to it
    assert any("output 'y' computed in float32, Cast back to float16 (a graph output" in c for c in p.changes())
    same_as_promoted(before, after, exact=True)


@pytest.mark.parametrize("value", ["1e-09", "1e-05"])
def test_fp32_constant_below_fp16_normals_stays_fp32(value):
    # 1e-9 is 0 in FP16, 1e-5 (a LayerNorm epsilon) a subnormal with 3 significant bits
    before, after, p = legalize(HEAD + f"""
    g (float16[2,3] x) => (float[2,3] y) {{
      k = Constant<value = float[1] {{{value}}}>()
      y = Mul(x, k)
    }}""")
    assert p.exact and any("input 'x' float16 -> float32" in c for c in p.changes())
    got = same_as_promoted(before, after, exact=True)
    np.testing.assert_allclose(got["y"], feeds_of(before)["x"].astype(np.float32) * np.float32(value), rtol=1e-6)


def test_bounded_result_is_cast_back_for_typed_readers():
    before, after, p = legalize(HEAD + """
    g (float16[1,4] x, float16[1,4] w, float[1,4] t) => (float16[1,4] y, float16[1,4] z) <float16[1,4] m> {
      s = Sin(t)
      b = Greater(x, w)
      m = Where(b, x, s)
      y = Mul(m, w)
      z = Cast<to = 10>(m)
    }""")
    # |Where(x16, sin)| <= 65504: its typed reader (Mul) gets an FP16 copy, its Cast reads FP32
    assert any("output 'm' computed in float32, Cast back to float16 (values known within" in c for c in p.changes())
    assert dtypes(after)["m"] == "float16" and dtypes(after)["y"] == "float16"
    z_cast = next(n for n in after.graph.node if n.output[0] == "z")
    assert dtypes(after)[z_cast.input[0]] == "float32"
    assert not p.exact  # Mul now computes in FP16 where promotion computed in FP32
    same_as_promoted(before, after, exact=False)


def test_unbounded_result_propagates_and_readers_are_legalised():
    before, after, p = legalize(HEAD + """
    g (float16[1,4] x, float[1,4] t) => (float16[1,8] y) <float16[1,8] cat> {
      e = Exp(t)
      cat = Concat<axis = 1>(x, e)
      w32 = Constant<value = float[1] {3.0}>()
      w = Cast<to = 10>(w32)
      y = Mul(cat, w)
    }""")
    # Exp is unbounded: cat stays FP32, so Mul mixes it with FP16 w, which is widened
    changes = "\n".join(p.changes())
    assert "input 'x' float16 -> float32" in changes and "input 'w' float16 -> float32" in changes
    assert dtypes(after)["y"] == "float16"
    same_as_promoted(before, after, exact=True)


def test_only_schema_tied_inputs_count():
    # Pow's exponent has its own type variable, Where's condition is bool: nothing is mixed
    _, after, modified, _ = apply(HEAD + """
    g (float16[2] x, float[2] e, bool[2] c) => (float16[2] y) {
      p = Pow(x, e)
      y = Where(c, p, x)
    }""", LegalizeDtypesPass())
    assert not modified
    check_full(after)


def test_mixed_float_and_integer_cannot_be_legalised():
    text = HEAD + """
    g (float16[2] x, int64[2] n) => (float16[2] y) {
      y = Add(x, n)
    }"""
    with pytest.raises(PassError) as err:
        apply(text, LegalizeDtypesPass())
    assert err.value.exit_code == 2
    assert "Add (output 'y') mixes input dtypes 'x' float16, 'n' int64" in err.value.one_line()


def test_meaning_check_runs_the_mixed_graph_under_type_promotion(tmp_path):
    folder = write_model(onnx_model(HEAD + """
    g (float16[1,4] x, float[1,4] t) => (float16[1,8] y) {
      s = Sin(t)
      cat = Concat<axis = 1>(x, s)
      y = Cast<to = 10>(cat)
    }"""), tmp_path / "src")
    (tmp_path / "out").mkdir()
    meta = run_pipeline(folder, tmp_path / "out", [{"name": "legalize_dtypes"}, {"name": "toposort"}],
                        check="each")
    assert meta["passes"][0]["check"] == "vs the graph before with type promotion: identical"
    assert meta["passes"][0]["changes"]
    check_full(onnx.load(str(tmp_path / "out" / "model.onnx")))


def test_stage_without_legalize_names_the_mixed_node(tmp_path):
    folder = write_model(onnx_model(HEAD + """
    g (float16[1,4] x, float[1,4] t) => (float[1,8] y) {
      y = Concat<axis = 1>(x, t)
    }"""), tmp_path / "src")
    (tmp_path / "out").mkdir()
    with pytest.raises(PassError) as err:
        run_pipeline(folder, tmp_path / "out", [{"name": "cleanup"}], module="m")
    line = err.value.one_line()
    assert "Concat (output 'y') mixes input dtypes 'x' float16, 't' float32" in line
    assert 'add { name = "legalize_dtypes" }' in line and "modules.m.passes" in line
