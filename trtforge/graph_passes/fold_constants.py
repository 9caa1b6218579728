"""Fold constant subgraphs and static shape arithmetic (Shape -> Gather -> Concat ...) into
constants, so TensorRT parses no INT64 shape layers for static inputs. Large folded tensors are
not created (size_threshold): folding must not balloon weights.

Weights stay on disk except the ones a foldable node reads: graphsurgeon hands folded subgraphs
to ONNX Runtime as bytes, where external references cannot resolve (or would resolve against the
working directory), so exactly those tensors are loaded first, from the model's folder, and only
if under the size threshold (seen: diffusers' AutoencoderKL export folds an Expand of an external
initializer). Weights that were loaded but not folded go back to being lazy references, so the
output still points at the original weight file instead of copying them into passes.data.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues

from trtforge.graph_passes.base import GraphPass, PassContext, signature

NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}


def _static(t) -> bool:
    return t.shape is not None and all(isinstance(d, int) for d in t.shape)


def constant_derivable(graph: gs.Graph) -> set[str]:
    """Tensors whose values follow from constants and static shapes alone."""
    known = {name for name, t in graph.tensors().items() if isinstance(t, gs.Constant)}
    for node in graph.nodes:  # ONNX keeps nodes in topological order
        if node.op in NONDETERMINISTIC or node.op in ("If", "Loop", "Scan"):
            continue
        if node.op == "Shape" and node.inputs and _static(node.inputs[0]):
            known.update(o.name for o in node.outputs)
        elif all(t.is_empty() or t.name in known for t in node.inputs):
            known.update(o.name for o in node.outputs)
    return known


def load_folded_weights(graph: gs.Graph, limit: int) -> dict:
    """Load the lazy constants a foldable node reads (each at most `limit` bytes);
    name -> (lazy values, loaded array)."""
    known = constant_derivable(graph)
    loaded = {}
    for node in graph.nodes:
        if node.op == "Shape" or not all(t.is_empty() or t.name in known for t in node.inputs):
            continue
        for t in node.inputs:
            if isinstance(t, gs.Constant) and isinstance(t._values, LazyValues) and t._values.nbytes <= limit:
                lazy = t._values
                t.values = lazy.load()  # this tensor alone, from the model's folder
                loaded[t.name] = (lazy, t._values)
    return loaded


class FoldConstantsPass(GraphPass):
    name = "fold_constants"
    exact = False  # ONNX Runtime may evaluate folded arithmetic in another order or precision

    def __init__(self, size_threshold_mib: float = 16.0):
        self.size_threshold_mib = size_threshold_mib

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        before = signature(graph)
        limit = int(self.size_threshold_mib * (1 << 20))
        loaded = load_folded_weights(graph, limit)
        graph.fold_constants(fold_shapes=True, partitioning="basic", error_ok=True, size_threshold=limit)
        graph.cleanup(remove_unused_graph_inputs=False)
        for t in graph.tensors().values():  # weights loaded but not folded: references again
            if isinstance(t, gs.Constant) and t.name in loaded and t._values is loaded[t.name][1]:
                t._values = loaded[t.name][0]
        return signature(graph) != before
