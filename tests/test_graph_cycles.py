"""Every graph walker stops on a graph that feeds itself with GraphCycleError (exit 2) naming a
node on the cycle: before, legalize_dtypes' walk grew without end (22.7 GiB) and graphsurgeon's
toposort had no word for it."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.parser
import onnx_graphsurgeon as gs
import pytest

from trtforge.graph_passes.base import PassContext, Pipeline
from trtforge.graph_passes.legalize_dtypes import LegalizeDtypesPass
from trtforge.graph_passes.toposort import ToposortPass
from trtforge.graphs.cycles import GraphCycleError, cycle_node
from trtforge.graphs.evaluate import Evaluator
from trtforge.graphs.files import import_graph

CYCLE = """<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y) {
  a = Add(x, c)
  c = Relu(a)
  y = Identity(c)
}"""

# the graph a manifest input named like an output gave: input 'sample' is also a node's output
FED = """<ir_version: 8, opset_import: ["" : 17]>
g (float[2] sample) => (float[2] sample) {
  h = Relu(sample)
  sample = Neg(h)
}"""

ACYCLIC = """<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y) {
  a = Relu(x)
  b = Neg(x)
  y = Add(a, b)
}"""


def _gs(text: str) -> gs.Graph:
    return gs.import_onnx(onnx.parser.parse_model(text))


def test_cycle_node_names_a_node_on_the_cycle():
    assert cycle_node(_gs(ACYCLIC)) is None
    assert cycle_node(_gs(CYCLE)).op in ("Add", "Relu")
    assert cycle_node(_gs(FED)).op in ("Relu", "Neg")


@pytest.mark.parametrize("text", [CYCLE, FED], ids=["cycle", "input_fed_by_output"])
def test_every_walker_refuses_a_cycle(text):
    model = onnx.parser.parse_model(text)
    with pytest.raises(GraphCycleError, match="cycle through"):
        import_graph(model, Path("."))  # the passes' and the precision rules' entry
    with pytest.raises(GraphCycleError) as e:
        Evaluator(model, None)
    assert e.value.exit_code == 2 and "cycle through node '" in e.value.one_line()
    for p in (LegalizeDtypesPass(), ToposortPass()):
        with pytest.raises(GraphCycleError, match="cycle through"):
            Pipeline([p]).run(_gs(text), PassContext(base_dir=Path("."), module="m"))


def test_a_pass_that_makes_a_cycle_is_named():
    class Loop:
        name, exact, changes_io = "loop", True, False

        def requires(self, graph):
            pass

        def ensures(self, graph):
            pass

        def apply(self, graph, ctx):
            relu = next(n for n in graph.nodes if n.op == "Relu")
            relu.inputs[0] = graph.nodes[-1].outputs[0]  # Relu now reads Add's output
            return True

    with pytest.raises(GraphCycleError) as e:
        Pipeline([Loop()]).run(_gs(ACYCLIC), PassContext(base_dir=Path("."), module="m"))
    assert "modules.m.passes[0] (loop)" in e.value.one_line()
