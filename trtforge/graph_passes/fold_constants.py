"""Fold constant subgraphs and static shape arithmetic (Shape -> Gather -> Concat ...) into
constants, so TensorRT parses no INT64 shape layers for static inputs. Large folded tensors are
not created (size_threshold): folding must not balloon weights."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from trtforge.graph_passes.base import GraphPass, PassContext, signature


class FoldConstantsPass(GraphPass):
    name = "fold_constants"

    def __init__(self, size_threshold_mib: float = 16.0):
        self.size_threshold_mib = size_threshold_mib

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        before = signature(graph)
        graph.fold_constants(fold_shapes=True, partitioning="basic", error_ok=True,
                             size_threshold=int(self.size_threshold_mib * (1 << 20)))
        graph.cleanup(remove_unused_graph_inputs=False)
        return signature(graph) != before
