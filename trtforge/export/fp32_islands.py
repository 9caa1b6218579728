"""Find FP32 computation left inside a natively FP16 export (hard-coded float32 tensors,
`torch.empty` defaults, FP32 buffers): nodes whose float outputs are FLOAT in an FP16 graph."""

from __future__ import annotations

import onnx

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.input, *g.value_info, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def find_fp32_islands(model: onnx.ModelProto) -> list[dict]:
    """Nodes producing FLOAT tensors. Shape-only subgraphs never produce FLOAT, so every hit is
    real arithmetic in FP32 that TensorRT would run in FP32 (or that a Cast hides)."""
    types = tensor_types(model)
    if not any(t == FLOAT16 for t in types.values()):
        return []  # not an FP16 graph: nothing to report
    hits = []
    for node in model.graph.node:
        outs = [o for o in node.output if types.get(o) == FLOAT]
        if outs:
            hits.append({"node": node.name, "op": node.op_type, "outputs": outs})
    return hits
