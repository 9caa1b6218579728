"""Remove dead nodes, unused initializers and unused inputs of subgraphs (graphsurgeon cleanup)."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from trtforge.graph_passes.base import GraphPass, PassContext


class CleanupPass(GraphPass):
    name = "cleanup"

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        nodes, tensors = len(graph.nodes), len(graph.tensors())
        graph.cleanup(remove_unused_graph_inputs=False)
        return (len(graph.nodes), len(graph.tensors())) != (nodes, tensors)
