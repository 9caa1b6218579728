"""The Cast realiser on ONNX-text graphs: islands, shared casts, FP32 initializers, I/O dtypes,
no cancelling pairs, and FP16-faithful numerics of the result."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from tests.precision_rules.helpers import HEADER, graph_of
from trtforge.errors import InternalError
from trtforge.precision_rules.cast_realizer import F16, F32, check_invariants, realize_casts
from trtforge.verify.onnx_check import run_fp16_faithful

# a, b both read x; a -> b is one island; w only used inside it; s is shared with an FP16 node
GRAPH = (
    HEADER
    + """
g (float[4,4] x) => (float[4,4] y, float[4,4] z) <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[1] s = {2}> {
    [a] m = MatMul (x, w)
    [b] sm = Softmax <axis = -1> (m)
    [c] p = Mul (x, s)
    [d] q = Mul (sm, s)
    [e] y = Add (q, p)
    [f] z = Relu (sm)
}"""
)


def _casts(graph):
    return [n for n in graph.nodes if n.op == "Cast"]


def test_island_shares_casts_and_keeps_io_dtypes():
    g = graph_of(GRAPH)
    counts = realize_casts(g, {"a", "b", "x_reader_that_does_not_exist"})
    by = {n.name: n for n in g.nodes}
    # x enters once; the island's output leaves once (shared by d and f); a -> b has no cast between
    assert counts == {"to_fp32": 1, "to_fp16": 1, "initializers_fp32": 1, "cancelled": 0, "masks_widened": 0}
    assert by["b"].inputs[0] is by["a"].outputs[0] and by["a"].outputs[0].dtype == F32
    assert by["d"].inputs[0] is by["f"].inputs[0]
    assert [(t.name, np.dtype(t.dtype)) for t in (*g.inputs, *g.outputs)] == [("x", F16), ("y", F16), ("z", F16)]


def test_initializer_stored_fp32_only_when_used_only_in_islands():
    g = graph_of(GRAPH)
    realize_casts(g, {"a", "d"})  # w only in a; s shared by d (FP32) and c (FP16)
    tensors = g.tensors()
    assert tensors["w"].values.dtype == np.float32
    assert tensors["s"].values.dtype == np.float16
    assert any(n.inputs[0].name == "s" for n in _casts(g))  # s is cast at run time for d


def test_graph_input_and_output_at_island_edges():
    g = graph_of(
        HEADER
        + """
g (float[4] x) => (float[4] y) {
    [a] y = Exp (x)
}"""
    )
    counts = realize_casts(g, {"a"})
    assert counts["to_fp32"] == 1 and counts["to_fp16"] == 1
    assert np.dtype(g.inputs[0].dtype) == F16 and np.dtype(g.outputs[0].dtype) == F16
    assert g.outputs[0].name == "y"


def test_existing_fp16_cast_into_an_island_does_not_make_a_cancelling_pair():
    # the graph casts an FP32 tensor to FP16 (an FP32 island left by the export) before a node
    # the plan keeps FP32: the island reads the FP32 tensor directly
    g = graph_of(
        HEADER
        + """
g (float[4] x) => (float[4] y) {
    [e] e = Exp (x)
    [u] u = Cast <to = 1> (e)
    [w] w = Sqrt (u)
    [n] n = Cast <to = 10> (w)
    [a] y = Neg (n)
}"""
    )
    counts = realize_casts(g, {"a"})
    assert counts["cancelled"] == 1
    for cast in _casts(g):
        src = cast.inputs[0].inputs[0] if cast.inputs[0].inputs else None
        assert not (
            src is not None and src.op == "Cast" and np.dtype(src.inputs[0].dtype) == np.dtype(cast.outputs[0].dtype)
        )


def test_check_invariants_catches_a_cancelling_pair():
    x = gs.Variable("x", dtype=np.float32, shape=[2])
    h = gs.Variable("h", dtype=np.float16, shape=[2])
    y = gs.Variable("y", dtype=np.float32, shape=[2])
    g = gs.Graph(
        nodes=[
            gs.Node("Cast", "c1", {"to": onnx.TensorProto.FLOAT16}, [x], [h]),
            gs.Node("Cast", "c2", {"to": onnx.TensorProto.FLOAT}, [h], [y]),
        ],
        inputs=[x],
        outputs=[y],
    )
    with pytest.raises(InternalError, match="cancel"):
        check_invariants(g, [], [("x", F32), ("y", F32)])


def test_check_invariants_catches_changed_io_and_fp16_reads():
    g = graph_of(HEADER + "g (float[4] x) => (float[4] y) { [a] y = Exp (x) }")
    with pytest.raises(InternalError, match="still reads FP16"):
        check_invariants(g, [g.nodes[0]], [("x", F16), ("y", F16)])
    with pytest.raises(InternalError, match="I/O changed"):
        check_invariants(g, [], [("x", F32), ("y", F16)])


def test_realised_graph_is_valid_and_fp16_faithful(tmp_path):
    # exp(12) = 162755 overflows FP16; kept FP32 with the normalising Div, the result is finite
    text = (
        HEADER
        + """
g (float[4] x) => (float[4] y) <float[1] k = {12}> {
    [m] t = Mul (x, k)
    [e] ex = Exp (t)
    [s] tot = ReduceSum <keepdims = 1> (ex)
    [d] y = Div (ex, tot)
}"""
    )
    feeds = {"x": np.ones(4, np.float16)}
    plain = graph_of(text)
    pure = _save(plain, tmp_path / "pure")
    assert not np.isfinite(run_fp16_faithful(pure, feeds)["y"]).all()
    mixed = graph_of(text)
    realize_casts(mixed, {"e", "s", "d"})
    out = run_fp16_faithful(_save(mixed, tmp_path / "mixed"), feeds)["y"]
    assert out.dtype == np.float16 and np.allclose(out, 0.25)


def _save(graph, folder):
    folder.mkdir()
    model = gs.export_onnx(graph, do_type_check=True)
    model.ir_version = 8
    onnx.checker.check_model(onnx.shape_inference.infer_shapes(model, strict_mode=True))
    onnx.save(model, str(folder / "model.onnx"))
    return folder


def test_external_initializer_stored_fp32_saves_and_loads(tmp_path):
    """An initializer kept in the external-data file is rewritten inline as FP32 (regression: it
    kept its EXTERNAL location with no file, and saving failed)."""
    from tests.precision_rules.helpers import model_of
    from trtforge.graphs.files import import_graph, read_tensor, save_model

    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir(), dest.mkdir()
    model = model_of(
        HEADER
        + """
g (float[4] x) => (float[4] y) <float[4] w = {1, 2, 3, 4}> {
    [a] y = Mul (x, w)
}"""
    )
    onnx.save_model(model, str(src / "model.onnx"), save_as_external_data=True, location="w.data", size_threshold=0)
    g = import_graph(onnx.load(str(src / "model.onnx"), load_external_data=False), src)
    assert realize_casts(g, {"a"})["initializers_fp32"] == 1
    out = gs.export_onnx(g)
    save_model(out, src, dest, new_data="precision.data")
    w = next(t for t in onnx.load(str(dest / "model.onnx"), load_external_data=False).graph.initializer)
    assert w.data_type == onnx.TensorProto.FLOAT
    assert read_tensor(w, dest).tolist() == [1.0, 2.0, 3.0, 4.0]
