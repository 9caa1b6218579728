"""cleanup, toposort and fold_constants on ONNX text: what they change, that they say so
truthfully, and that the outputs stay equal."""

from tests.conftest import onnx_model
from tests.graph_passes.helpers import apply, assert_same_outputs, ops
from trtforge.graph_passes.base import PassContext, Pipeline
from trtforge.graph_passes.cleanup import CleanupPass
from trtforge.graph_passes.fold_constants import FoldConstantsPass
from trtforge.graph_passes.toposort import ToposortPass
from trtforge.graphs.files import import_graph

HEAD = '<ir_version: 10, opset_import: ["" : 20]>\n'
SIMPLE = HEAD + "g (float[2,3] x) => (float[2,3] y) { y = Relu(x) }"


def test_cleanup_removes_dead_nodes():
    before, after, modified, _ = apply(
        HEAD
        + """
    g (float[2,3] x) => (float[2,3] y) {
      dead = Neg(x)
      y = Relu(x)
    }""",
        CleanupPass(),
    )
    assert modified and ops(after) == ["Relu"]
    assert_same_outputs(before, after)


def test_fold_constants_folds_constant_arithmetic():
    before, after, modified, _ = apply(
        HEAD
        + """
    g (float[2,3] x) => (float[2,3] y) {
      a = Constant<value = float[3] {1, 2, 3}>()
      b = Constant<value = float[3] {0.5, 0.25, 2}>()
      c = Mul(a, b)
      y = Add(x, c)
    }""",
        FoldConstantsPass(),
    )
    assert modified and ops(after) == ["Add"]
    assert_same_outputs(before, after, exact=False)


def test_toposort_reports_a_real_reorder_only(tmp_path):
    graph = import_graph(
        onnx_model(
            HEAD
            + """
    g (float[2,3] x) => (float[2,3] y) {
      a = Neg(x)
      y = Relu(a)
    }"""
        ),
        tmp_path,
    )
    graph.nodes.reverse()
    pipe = Pipeline([ToposortPass(), ToposortPass()])
    pipe.run(graph, PassContext(base_dir=tmp_path))
    assert [r.modified for r in pipe.reports] == [True, False]
    assert [n.op for n in graph.nodes] == ["Neg", "Relu"]


def test_nothing_to_do_is_not_modified():
    for p in (CleanupPass(), FoldConstantsPass(), ToposortPass()):
        _, after, modified, pipe = apply(SIMPLE, p)
        assert not modified and not pipe.reports[0].modified, p.name
        assert ops(after) == ["Relu"]
