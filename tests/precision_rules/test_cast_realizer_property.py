"""Property: on random DAGs with random FP32 sets (graph inputs/outputs, shared initializers and
existing Casts included), the realised graph type-checks strictly, keeps its I/O, and passes the
realiser's own invariants; FP32 nodes compute in FP32."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from hypothesis import given, settings
from hypothesis import strategies as st

from trtforge.precision_rules.cast_realizer import F16, F32, realize_casts

OPS = ("Relu", "Neg", "Add", "Mul", "Cast16")


@st.composite
def dags(draw):
    n = draw(st.integers(2, 9))
    x = gs.Variable("x", dtype=np.float16, shape=[4])
    w = gs.Constant("w", np.ones(4, np.float16))
    tensors, nodes = [x], []
    for i in range(n):
        op = draw(st.sampled_from(OPS))
        a = tensors[draw(st.integers(0, len(tensors) - 1))]
        out = gs.Variable(f"t{i}", dtype=np.float16, shape=[4])
        if op in ("Add", "Mul"):
            b = draw(st.sampled_from([w, tensors[draw(st.integers(0, len(tensors) - 1))]]))
            nodes.append(gs.Node(op, f"n{i}", inputs=[a, b], outputs=[out]))
        elif op == "Cast16":  # an FP32 detour the export left: FP16 -> FP32 -> FP16
            wide = gs.Variable(f"w{i}", dtype=np.float32, shape=[4])
            nodes += [
                gs.Node("Cast", f"up{i}", {"to": onnx.TensorProto.FLOAT}, [a], [wide]),
                gs.Node("Cast", f"n{i}", {"to": onnx.TensorProto.FLOAT16}, [wide], [out]),
            ]
        else:
            nodes.append(gs.Node(op, f"n{i}", inputs=[a], outputs=[out]))
        tensors.append(out)
    outputs = (
        [tensors[-1]] + draw(st.lists(st.sampled_from(tensors[1:-1]), max_size=2, unique_by=id))
        if n > 1
        else [tensors[-1]]
    )
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=list({id(t): t for t in outputs}.values()))
    fp32 = draw(st.sets(st.sampled_from([nd.name for nd in nodes])))
    return graph, fp32


@settings(max_examples=150, deadline=None)
@given(dags())
def test_random_graphs_realise_cleanly(case):
    graph, fp32 = case
    io = [(t.name, F16) for t in (*graph.inputs, *graph.outputs)]
    compute = {n.name for n in graph.nodes if n.name in fp32 and n.op != "Cast"}
    realize_casts(graph, fp32)  # asserts its invariants itself
    model = gs.export_onnx(graph, do_type_check=True)
    model.ir_version = 8
    model.opset_import[0].version = 17
    onnx.checker.check_model(model)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert [(t.name, np.dtype(t.dtype)) for t in (*graph.inputs, *graph.outputs)] == io
    for node in graph.nodes:
        if node.name in compute:
            assert all(np.dtype(t.dtype) == F32 for t in node.outputs)
