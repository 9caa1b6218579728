"""Topologically sort nodes; reports modified only when the order actually changed."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from trtforge.graph_passes.base import GraphPass, PassContext


class ToposortPass(GraphPass):
    name = "toposort"

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        before = [id(n) for n in graph.nodes]
        graph.toposort()
        return [id(n) for n in graph.nodes] != before
