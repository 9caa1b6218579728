"""Realise a precision plan as Cast nodes, for strongly typed TensorRT (10.12+, 11) and
TensorRT-RTX, which obey the graph's types and nothing else.

Cases:
- an FP32 node's FP16 activation input from outside its island gets one Cast to FLOAT per tensor,
  shared by every FP32 consumer;
- an FP16 initializer used only inside islands is stored FP32 (only that tensor is loaded);
  one shared with FP16 nodes is cast at run time;
- an FP32 node's FP16 output is produced as FLOAT; FP32 consumers take it directly (neighbours
  share one island), others and graph outputs get one Cast back to FLOAT16 under the old name;
- a mask constant at the FP16 minimum (-65504) read by an FP32 node becomes float32's minimum
  (mask_widen).
Invariants are checked after: FP32 nodes see FLOAT inputs, no Cast pair cancels, graph I/O dtypes
unchanged. A broken invariant is a bug (InternalError with its traceback).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from trtforge.errors import invariant
from trtforge.precision_rules.mask_widen import widen_saturated_masks

# ops whose output type is fixed by an attribute or that carry no float math
NOT_CASTABLE = {
    "Cast",
    "CastLike",
    "Shape",
    "Size",
    "Constant",
    "ConstantOfShape",
    "EyeLike",
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
}
F16, F32 = np.dtype(np.float16), np.dtype(np.float32)


def _dtype(t) -> np.dtype | None:
    try:
        return np.dtype(t.dtype) if t.dtype is not None else None
    except TypeError:
        return None


def realize_casts(graph: gs.Graph, fp32_names: set[str]) -> dict:
    io_before = [(t.name, _dtype(t)) for t in (*graph.inputs, *graph.outputs)]
    fp32 = [n for n in graph.nodes if n.name in fp32_names and n.op not in NOT_CASTABLE]
    island = {id(n) for n in fp32}
    casts = {"to_fp32": 0, "to_fp16": 0, "initializers_fp32": 0}

    # 1. outputs: FP32 nodes produce FLOAT; FP16 consumers and graph outputs get a Cast back.
    for node in fp32:
        for i, out in enumerate(list(node.outputs)):
            if _dtype(out) != F16:
                continue
            wide = gs.Variable(f"{out.name}__fp32", dtype=F32, shape=out.shape)
            node.outputs[i] = wide
            consumers = list(out.outputs)
            for c in consumers:
                if id(c) in island:
                    for k, t in enumerate(c.inputs):
                        if t is out:
                            c.inputs[k] = wide
            if out.outputs or out in graph.outputs:
                graph.nodes.append(
                    gs.Node(
                        "Cast",
                        name=f"{out.name}__to_fp16",
                        attrs={"to": onnx.TensorProto.FLOAT16},
                        inputs=[wide],
                        outputs=[out],
                    )
                )
                casts["to_fp16"] += 1

    # 2. inputs: FP16 tensors entering an island from outside.
    shared: dict[str, gs.Variable] = {}
    for node in fp32:
        for j, t in enumerate(list(node.inputs)):
            if _dtype(t) != F16:
                continue
            if isinstance(t, gs.Constant) and all(id(c) in island for c in t.outputs):
                t.values = t.values.astype(np.float32)  # loads this one tensor only
                t.data_location = None  # now inline; save_model moves it out again if large
                casts["initializers_fp32"] += 1
                continue
            if t.name not in shared:
                wide = gs.Variable(f"{t.name}__fp32_in", dtype=F32, shape=t.shape)
                graph.nodes.append(
                    gs.Node(
                        "Cast",
                        name=f"{t.name}__to_fp32",
                        attrs={"to": onnx.TensorProto.FLOAT},
                        inputs=[t],
                        outputs=[wide],
                    )
                )
                shared[t.name] = wide
                casts["to_fp32"] += 1
            node.inputs[j] = shared[t.name]
    casts["cancelled"] = _drop_cancelling_pairs(graph)
    graph.cleanup()
    casts["masks_widened"] = widen_saturated_masks(graph, {n.name for n in fp32})
    graph.cleanup().toposort()
    check_invariants(graph, fp32, io_before)
    return casts


def _drop_cancelling_pairs(graph: gs.Graph) -> int:
    """A Cast back to the dtype its producer Cast started from (the graph's own FP32->FP16 Cast
    feeding a new island, an island output cast to FP16 and straight back by the graph, or an
    FP16->FP32->FP16 detour in the export): its consumers read the original tensor instead. When
    its output is a graph output, it becomes an Identity of the original (the name is kept)."""
    dropped = 0
    for node in list(graph.nodes):
        if node.op != "Cast" or not node.inputs[0].inputs:
            continue
        first = node.inputs[0].inputs[0]
        if first.op != "Cast" or _dtype(first.inputs[0]) != _dtype(node.outputs[0]):
            continue
        original, out = first.inputs[0], node.outputs[0]
        if out in graph.outputs:
            node.op, node.attrs = "Identity", {}
            node.inputs[0] = original
        else:
            for consumer in list(out.outputs):
                for k, t in enumerate(consumer.inputs):
                    if t is out:
                        consumer.inputs[k] = original
            node.outputs.clear()
        dropped += 1
    return dropped


def check_invariants(graph: gs.Graph, fp32: list[gs.Node], io_before: list) -> None:
    for node in fp32:
        for t in node.inputs:
            invariant(_dtype(t) != F16, f"FP32 node '{node.name}' still reads FP16 tensor '{t.name}'")
    for node in graph.nodes:
        if node.op != "Cast":
            continue
        src = node.inputs[0].inputs[0] if node.inputs[0].inputs else None
        if src is not None and src.op == "Cast":
            invariant(
                _dtype(src.inputs[0]) != _dtype(node.outputs[0]),
                f"Casts '{src.name}' -> '{node.name}' cancel each other",
            )
    io_after = [(t.name, _dtype(t)) for t in (*graph.inputs, *graph.outputs)]
    invariant(io_after == io_before, f"graph I/O changed: {io_before} -> {io_after}")
