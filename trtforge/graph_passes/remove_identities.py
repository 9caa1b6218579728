"""Remove nodes that compute the identity:
- Identity;
- Dropout at inference (its mask output unused; the ratio is ignored when training_mode is off);
- Cast to the dtype its input already has;
- a cancelling Cast pair A -> B -> A where A -> B is exact (float16 -> float32 -> float16,
  int32 -> int64 -> int32, ...). A narrowing pair (float32 -> float16 -> float32) rounds, so it
  is kept: removing it would change the numbers.
A graph output keeps its name; a node between a graph input and a graph output stays.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from numpy.typing import DTypeLike

from trtforge.errors import invariant
from trtforge.graph_passes.base import GraphPass, PassContext, bypass
from trtforge.graph_passes.fold_static_shapes import const_values

# A -> B loses nothing: every value of A is a value of B
_EXACT = {
    "float16": {"float32", "float64"},
    "bfloat16": {"float32", "float64"},
    "float32": {"float64"},
    "int8": {"int16", "int32", "int64", "float16", "float32", "float64"},
    "uint8": {"int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32", "float64"},
    "int16": {"int32", "int64", "float32", "float64"},
    "uint16": {"int32", "uint32", "int64", "uint64", "float32", "float64"},
    "int32": {"int64", "float64"},
    "uint32": {"int64", "uint64", "float64"},
    "bool": {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32", "float64"},
}


def dtype_name(dtype: DTypeLike | int | None) -> str | None:
    if dtype is None:
        return None
    if isinstance(dtype, int):
        return onnx.helper.tensor_dtype_to_np_dtype(dtype).name if dtype != onnx.TensorProto.BFLOAT16 else "bfloat16"
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


def _cast_to(node: gs.Node) -> str | None:
    return dtype_name(int(node.attrs["to"]))


def _is_identity(node: gs.Node) -> bool:
    if node.op == "Identity":
        return True
    if node.op == "Dropout":
        if len(node.outputs) > 1 and node.outputs[1].outputs:
            return False  # someone reads the mask
        training = node.inputs[2] if len(node.inputs) > 2 else None
        if training is not None and training.name:
            values = const_values(training)
            return values is not None and not bool(values.any())
        return True
    if node.op == "Cast":
        src = dtype_name(node.inputs[0].dtype)
        return src is not None and src == _cast_to(node)
    return False


def _cancelling_pair(node: gs.Node) -> gs.Tensor | None:
    """For the second Cast of an exact A -> B -> A pair, the original A tensor."""
    if node.op != "Cast" or not node.inputs[0].inputs or node.inputs[0].inputs[0].op != "Cast":
        return None
    first = node.inputs[0].inputs[0]
    a = dtype_name(first.inputs[0].dtype)
    b = _cast_to(first)
    if a is None or a != _cast_to(node) or b not in _EXACT.get(a, ()):
        return None
    return first.inputs[0]


class RemoveIdentitiesPass(GraphPass):
    name = "remove_identities"

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        changed = False
        for node in list(graph.nodes):
            if not node.outputs or not node.inputs:
                continue  # bypassed already
            if _is_identity(node):
                changed |= bypass(graph, node, node.inputs[0], node.outputs[0])
                continue
            origin = _cancelling_pair(node)
            if origin is not None:
                changed |= bypass(graph, node, origin, node.outputs[0])
        if changed:
            graph.cleanup(remove_unused_graph_inputs=False)
        return changed

    def ensures(self, graph: gs.Graph) -> None:
        for node in graph.nodes:
            if node.op == "Identity" and node.inputs and node.outputs:
                i, o = node.inputs[0], node.outputs[0]
                stuck = o in graph.outputs and (
                    i in graph.inputs or i in graph.outputs or isinstance(i, gs.Constant) or not i.inputs
                )
                invariant(stuck, f"Identity '{node.name}' survived though it could be bypassed")
