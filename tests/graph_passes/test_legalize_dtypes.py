"""legalize_dtypes on ONNX text, one test per case of its docstring: the graph fails onnx's full
check before and passes it after (and ONNX Runtime then runs it in its own dtypes), the FP32-widened
evaluation the meaning check uses gives identical outputs (within the folding tolerance where a
constant was stored FP16), graph outputs keep their dtypes, and every change is named."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from tests.conftest import onnx_model, write_model
from tests.graph_passes.helpers import apply, feeds_of, ort_run
from trtforge.errors import PassError
from trtforge.graph_passes.legalize_dtypes import LegalizeDtypesPass
from trtforge.graph_passes.meaning import compare
from trtforge.graph_passes.run import run_pipeline
from trtforge.graphs.evaluate import Evaluator
from trtforge.graphs.files import check_full

HEAD = '<ir_version: 10, opset_import: ["" : 20]>\n'


def legalize(text: str):
    """(before, after, the pass) with onnx's full check failing before and passing after."""
    with pytest.raises(onnx.shape_inference.InferenceError):
        check_full(onnx_model(text))
    before, after, modified, pipe = apply(text, LegalizeDtypesPass())
    assert modified and pipe.reports[0].changes == pipe.passes[0].changes()
    check_full(after)
    return before, after, pipe.passes[0]


def same_meaning(before, after, p: LegalizeDtypesPass) -> dict:
    """The meaning check's verdict on the pass (both graphs widened to FP32, node by node):
    bit-identical when the pass says it is exact, else within the folding tolerance. The legalised
    graph also runs in ONNX Runtime in its own dtypes; those outputs are returned."""
    feeds = feeds_of(before)
    want, got = (Evaluator(m, None, "fp32").run(feeds) for m in (before, after))
    verdict = compare([p], want, got)
    assert verdict == "identical" if p.exact else verdict.startswith("within tolerance")
    return ort_run(after, feeds)


def dtypes(model) -> dict:
    vis = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    return {v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name for v in vis}


def test_fp16_side_of_a_computed_fp32_concat_is_widened():
    # SDXL's text_time embedding: FP16 text embeds, FP32 sinusoidal time ids, one Concat
    before, after, p = legalize(
        HEAD
        + """
    g (float16[1,4] text, float16[1,2] ids) => (float16[1,8] y) <float[1,8] cat> {
      i = Cast<to = 1>(ids)
      s = Sin(i)
      c = Cos(i)
      t = Concat<axis = 1>(s, c)
      cat = Concat<axis = 1>(text, t)
      y = Cast<to = 10>(cat)
    }"""
    )
    assert p.exact
    assert p.changes() == [
        "Concat (output 'cat'): input 'text' float16 -> float32 by a Cast ('t' is float32, computed: kept float32)"
    ]
    assert dtypes(after)["cat"] == "float32"
    same_meaning(before, after, p)


def test_in_range_fp32_constant_is_stored_fp16():
    before, after, p = legalize(
        HEAD
        + """
    g (float16[2,3] x) => (float16[2,3] y) {
      k = Constant<value = float[3] {0.5, -2.25, 1000.0}>()
      y = Add(x, k)
    }"""
    )
    assert not p.exact  # rounding to FP16: checked within the folding tolerance
    assert "Cast" not in [n.op_type for n in after.graph.node]
    assert [c for c in p.changes() if "constant 'k' float32 -> float16" in c and "max |v| 1000" in c]
    same_meaning(before, after, p)


def test_fp32_constant_beyond_fp16_widens_the_other_side():
    before, after, p = legalize(
        HEAD
        + """
    g (float16[2,3] x) => (float16[2,3] y) <float16[2,3] m> {
      k = Constant<value = float[1] {100000.0}>()
      m = Mul(x, k)
      y = Relu(m)
    }"""
    )
    assert any("input 'x' float16 -> float32" in c and "constant not stored narrow" in c for c in p.changes())
    # the product (up to 65504 * 1e5) is declared FP16 but not known to fit: it stays FP32, Relu
    # follows, and the graph output keeps its dtype
    assert dtypes(after)["m"] == "float32" and dtypes(after)["y"] == "float16"
    assert any("output 'y' computed in float32, Cast back to float16 (a graph output" in c for c in p.changes())
    assert p.exact
    same_meaning(before, after, p)


@pytest.mark.parametrize("value", ["1e-09", "1e-05"])
def test_fp32_constant_below_fp16_normals_stays_fp32(value):
    # 1e-9 is 0 in FP16, 1e-5 (a LayerNorm epsilon) a subnormal with 8 significant bits
    before, after, p = legalize(
        HEAD
        + f"""
    g (float16[2,3] x) => (float16[2,3] y) {{
      k = Constant<value = float[1] {{{value}}}>()
      y = Add(x, k)
    }}"""
    )
    assert any("input 'x' float16 -> float32" in c for c in p.changes())
    assert any("output 'y' computed in float32, Cast back to float16" in c for c in p.changes())
    same_meaning(before, after, p)
    assert p.exact


def test_a_result_declared_fp32_keeps_the_fp32_constant():
    # torch promoted (the exporter declared the sum FP32): rounding the constant is not needed
    before, after, p = legalize(
        HEAD
        + """
    g (float16[2,3] x) => (float[2,3] y) {
      k = Constant<value = float[1] {0.1}>()
      y = Add(x, k)
    }"""
    )
    assert p.exact and p.changes() == [
        "Add (output 'y'): input 'x' float16 -> float32 by a Cast (constant not stored narrow: 'k' max |v| 0.1)"
    ]
    same_meaning(before, after, p)


def test_bounded_result_declared_fp16_is_cast_back():
    before, after, p = legalize(
        HEAD
        + """
    g (float16[1,4] x, float16[1,4] w, float[1,4] t) => (float16[1,4] y) <float16[1,4] m> {
      s = Sin(t)
      b = Greater(x, w)
      m = Where(b, x, s)
      y = Mul(m, w)
    }"""
    )
    # |Where(x16, sin)| <= 65504: computed in FP32, m keeps its FP16 name and dtype for Mul
    assert any("output 'm' computed in float32, Cast back to float16 (values known within" in c for c in p.changes())
    assert dtypes(after)["m"] == "float16" and dtypes(after)["y"] == "float16"
    assert p.exact
    same_meaning(before, after, p)


def test_unbounded_result_propagates_and_readers_are_legalised():
    before, after, p = legalize(
        HEAD
        + """
    g (float16[1,4] x, float[1,4] t) => (float16[1,8] y) <float16[1,8] cat> {
      e = Exp(t)
      cat = Concat<axis = 1>(x, e)
      w32 = Constant<value = float[1] {3.0}>()
      w = Cast<to = 10>(w32)
      y = Mul(cat, w)
    }"""
    )
    # Exp is unbounded: cat stays FP32, so Mul mixes it with FP16 w, which is widened
    changes = "\n".join(p.changes())
    assert "input 'x' float16 -> float32" in changes and "input 'w' float16 -> float32" in changes
    assert dtypes(after)["cat"] == "float32" and dtypes(after)["y"] == "float16"
    assert p.exact
    same_meaning(before, after, p)


def test_comparison_with_an_fp32_threshold_is_widened():
    # rounding 0.1 to FP16 (0.09998) would flip Less for x = 0.09998
    before, after, p = legalize(
        HEAD
        + """
    g (float16[2,3] x) => (bool[2,3] y) {
      k = Constant<value = float[1] {0.1}>()
      y = Less(x, k)
    }"""
    )
    assert p.exact and any("input 'x' float16 -> float32" in c for c in p.changes())
    same_meaning(before, after, p)


def test_only_schema_tied_inputs_count():
    # Pow's exponent has its own type variable, Where's condition is bool: nothing is mixed
    _, after, modified, _ = apply(
        HEAD
        + """
    g (float16[2] x, float[2] e, bool[2] c) => (float16[2] y) {
      p = Pow(x, e)
      y = Where(c, p, x)
    }""",
        LegalizeDtypesPass(),
    )
    assert not modified
    check_full(after)


def test_mixed_float_and_integer_cannot_be_legalised():
    text = (
        HEAD
        + """
    g (float16[2] x, int64[2] n) => (float16[2] y) {
      y = Add(x, n)
    }"""
    )
    with pytest.raises(PassError) as err:
        apply(text, LegalizeDtypesPass())
    assert err.value.exit_code == 2
    assert "Add (output 'y') mixes input dtypes 'x' float16, 'n' int64" in err.value.one_line()


def test_meaning_check_runs_the_mixed_graph_widened(tmp_path):
    folder = write_model(
        onnx_model(
            HEAD
            + """
    g (float16[1,4] x, float[1,4] t) => (float16[1,8] y) {
      s = Sin(t)
      cat = Concat<axis = 1>(x, s)
      y = Cast<to = 10>(cat)
    }"""
        ),
        tmp_path / "src",
    )
    (tmp_path / "out").mkdir()
    meta = run_pipeline(folder, tmp_path / "out", [{"name": "legalize_dtypes"}, {"name": "toposort"}], check="each")
    assert meta["passes"][0]["check"] == "identical"
    assert meta["passes"][0]["changes"]
    check_full(onnx.load(str(tmp_path / "out" / "model.onnx")))


def test_stage_without_legalize_names_the_mixed_node(tmp_path):
    folder = write_model(
        onnx_model(
            HEAD
            + """
    g (float16[1,4] x, float[1,4] t) => (float[1,8] y) {
      y = Concat<axis = 1>(x, t)
    }"""
        ),
        tmp_path / "src",
    )
    (tmp_path / "out").mkdir()
    with pytest.raises(PassError) as err:
        run_pipeline(folder, tmp_path / "out", [{"name": "cleanup"}], module="m")
    line = err.value.one_line()
    assert "Concat (output 'y') mixes input dtypes 'x' float16, 't' float32" in line
    assert 'add { name = "legalize_dtypes" }' in line and "modules.m.passes" in line


F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT
CONSTANTS = (0.5, 0.1, 1000.0, 1e5, 1e-6)  # exact in FP16, rounded, exact, beyond range, subnormal


@st.composite
def mixed_graphs(draw) -> onnx.ModelProto:
    """Random chains over an FP16 and an FP32 input: elementwise ops, comparisons and Where on
    tensors of either dtype, FP32 constants, Casts. A mixed op's result is declared in the
    promoted dtype (as torch's exporter writes it) or, at random, the narrow one."""
    nodes, inits, infos = [], [], []
    pool = [("x", F16), ("t", F32)]
    for k in range(draw(st.integers(1, 8))):
        (a, da), (b, db) = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
        kind = draw(st.sampled_from(["binary", "const", "unary", "cast", "where"]))
        out = f"v{k}"
        if kind == "const":
            inits.append(
                onnx.numpy_helper.from_array(np.full([1], draw(st.sampled_from(CONSTANTS)), np.float32), f"k{k}")
            )
            b, db = f"k{k}", F32
        if kind in ("binary", "const"):
            nodes.append(helper.make_node(draw(st.sampled_from(["Add", "Mul", "Sub", "Max"])), [a, b], [out]))
        elif kind == "unary":
            nodes.append(helper.make_node(draw(st.sampled_from(["Relu", "Neg", "Sin", "Tanh"])), [a], [out]))
            db = da
        elif kind == "cast":
            db = F32 if da == F16 else F16
            nodes.append(helper.make_node("Cast", [a], [out], to=db))
            da = db
        else:
            nodes += [helper.make_node("Greater", [a, b], [f"c{k}"]), helper.make_node("Where", [f"c{k}", a, b], [out])]
        dtype = max(da, db, key=lambda d: d == F32) if da == db or draw(st.booleans()) else F16
        infos.append(helper.make_tensor_value_info(out, dtype, [2, 3]))
        pool.append((out, dtype))
    graph = helper.make_graph(
        nodes,
        "mixed",
        [helper.make_tensor_value_info("x", F16, [2, 3]), helper.make_tensor_value_info("t", F32, [2, 3])],
        [infos[-1]],
        initializer=inits,
        value_info=infos[:-1],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_graphs())
def test_any_mixed_chain_becomes_well_typed_and_keeps_its_meaning(model):
    before, after, modified, pipe = apply(model, LegalizeDtypesPass())
    check_full(after)
    assert [(o.name, o.type.tensor_type.elem_type) for o in after.graph.output] == [
        (o.name, o.type.tensor_type.elem_type) for o in before.graph.output
    ]
    same_meaning(before, after, pipe.passes[0])
    _, _, again, _ = apply(after, LegalizeDtypesPass())
    assert not again  # a second run finds nothing mixed
