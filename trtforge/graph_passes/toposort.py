"""Topologically sort nodes; reports modified only when the order actually changed."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from trtforge.graph_passes.base import GraphPass, PassContext
from trtforge.graphs.cycles import check_acyclic


class ToposortPass(GraphPass):
    name = "toposort"

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        check_acyclic(graph, ctx.module)  # graphsurgeon's own sort has no word for a cycle
        before = [id(n) for n in graph.nodes]
        graph.toposort()
        return [id(n) for n in graph.nodes] != before
