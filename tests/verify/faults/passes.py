"""A faulty user pass: claims to be harmless but scales one graph output (a wrong rewrite)."""

import numpy as np
import onnx_graphsurgeon as gs

from trtforge.graph_passes.base import GraphPass, PassContext, find_tensor


class ScaleOutputPass(GraphPass):
    name = "scale_output"

    def __init__(self, output: str, factor: float = 1.5):
        self.output, self.factor = output, factor

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        y = find_tensor(graph, self.output, "output", self.name)
        out = gs.Variable(y.name, dtype=y.dtype, shape=y.shape)
        y.name = f"{y.name}__unscaled"
        factor = gs.Constant(f"{out.name}__factor", np.array(self.factor, dtype=y.dtype))
        graph.outputs[graph.outputs.index(y)] = out
        graph.nodes.append(gs.Node("Mul", name=f"scale_{out.name}", inputs=[y, factor], outputs=[out]))
        return True
