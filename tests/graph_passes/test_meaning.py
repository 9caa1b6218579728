"""Meaning checks: ONNX Runtime before/after each pass or the pipeline; a pass that changes the
numbers fails with PassError naming it; a broken invariant names the pass and those before it."""

from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs
import pytest

from tests.conftest import onnx_model, write_model
from trtforge.data.tensors import save_arrays
from trtforge.errors import InternalError, PassError
from trtforge.graph_passes.base import GraphPass, PassContext, Pipeline
from trtforge.graph_passes.cleanup import CleanupPass
from trtforge.graph_passes.fold_constants import FoldConstantsPass
from trtforge.graph_passes.meaning import OrtChecker
from trtforge.graph_passes.remove_identities import RemoveIdentitiesPass
from trtforge.graph_passes.run import run_pipeline
from trtforge.graph_passes.toposort import ToposortPass
from trtforge.graphs.files import import_graph, load_graph_proto

TEXT = """<ir_version: 10, opset_import: ["" : 20]>
g (float16[2,4] x) => (float16[2,4] y) {
  a = Identity(x)
  k32 = Constant<value = float[1] {2.5}>()
  k = Cast<to = 10>(k32)
  k2 = Mul(k, k)
  b = Mul(a, k2)
  y = Relu(b)
}"""


class NegateReluPass(GraphPass):
    """A wrong rewrite (Relu -> Neg), named so the failure can be traced to it."""

    name = "negate_relu"

    def apply(self, graph, ctx):
        for n in graph.nodes:
            if n.op == "Relu":
                n.op = "Neg"
                return True
        return False


class BreaksInvariantPass(GraphPass):
    name = "breaks_invariant"

    def apply(self, graph, ctx):
        return False

    def ensures(self, graph):
        raise AssertionError("the graph lost its outputs")


def _pipeline(tmp_path: Path, passes, check: str):
    folder = write_model(onnx_model(TEXT), tmp_path / "m")
    model = load_graph_proto(folder)
    graph = import_graph(model, folder)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4)).astype(np.float16)
    checker = OrtChecker(folder, [{"x": x}], like=model)
    pipe = Pipeline(list(passes), check=check, checker=checker, snapshot=checker.snapshot)
    pipe.run(graph, PassContext(base_dir=folder))
    return pipe


@pytest.mark.parametrize("check", ["each", "pipeline"])
def test_good_passes_pass_their_checks(tmp_path, check):
    pipe = _pipeline(tmp_path, [RemoveIdentitiesPass(), FoldConstantsPass(), CleanupPass(), ToposortPass()], check)
    verdicts = {r.name: r.check for r in pipe.reports}
    if check == "each":
        assert verdicts["remove_identities"] == "identical"
        assert verdicts["fold_constants"].startswith("within tolerance")
        assert verdicts["cleanup"] == "not modified"
    else:
        assert all(v.startswith("pipeline: within tolerance") for v in verdicts.values())


@pytest.mark.parametrize("check", ["each", "pipeline"])
def test_a_wrong_pass_is_named(tmp_path, check):
    with pytest.raises(PassError, match="negate_relu"):
        _pipeline(tmp_path, [RemoveIdentitiesPass(), NegateReluPass(), CleanupPass()], check)


def test_check_off_does_not_notice(tmp_path):
    pipe = _pipeline(tmp_path, [NegateReluPass()], "off")
    assert pipe.reports[0].check == "off"


def test_broken_invariant_names_the_pass_and_those_before(tmp_path):
    with pytest.raises(InternalError, match=r"breaks_invariant.*passes before it: remove_identities, cleanup"):
        _pipeline(tmp_path, [RemoveIdentitiesPass(), CleanupPass(), BreaksInvariantPass()], "off")


def test_run_pipeline_reads_recorded_inputs_and_reports(tmp_path):
    folder = write_model(onnx_model(TEXT), tmp_path / "m")
    save_arrays(folder / "inputs.npz", {"x": np.ones((2, 4), np.float16)})
    out = tmp_path / "out"
    out.mkdir()
    from trtforge.graph_passes.run import recorded_inputs

    meta = run_pipeline(
        folder,
        out,
        [{"name": "remove_identities"}, {"name": "fold_constants"}],
        check="each",
        recorded=recorded_inputs(folder),
    )
    assert [p["check"] for p in meta["passes"]] == ["identical", meta["passes"][1]["check"]]
    assert meta["passes"][1]["check"].startswith("within tolerance")
    assert meta["nodes_before"] > meta["nodes_after"]
    assert (out / "model.onnx").exists() and (out / "passes.json").exists()


def test_bake_pass_is_left_to_verify(tmp_path):
    from trtforge.graph_passes.bake_transpose import BakeTransposePass

    pipe = _pipeline(tmp_path, [BakeTransposePass([1, 0], input="x"), RemoveIdentitiesPass()], "each")
    assert pipe.reports[0].check.startswith("verify stage")
    assert pipe.reports[1].check == "identical"


def test_fixed_point_runs_until_nothing_changes(tmp_path):
    pipe = Pipeline([RemoveIdentitiesPass(), CleanupPass()], fixed_point=True)
    graph = import_graph(onnx_model(TEXT), tmp_path)
    assert pipe.run(graph, PassContext(base_dir=tmp_path))
    assert [r.modified for r in pipe.reports[-2:]] == [False, False]
    assert "Identity" not in [n.op for n in graph.nodes]
    assert isinstance(graph, gs.Graph)


def _pipeline_end_to_end(tmp_path: Path, passes):
    folder = write_model(onnx_model(TEXT), tmp_path / "m")
    model = load_graph_proto(folder)
    graph = import_graph(model, folder)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4)).astype(np.float16)
    checker = OrtChecker(folder, [{"x": x}], like=model)
    pipe = Pipeline(list(passes), check="each", checker=checker, snapshot=checker.snapshot, end_to_end=True)
    pipe.run(graph, PassContext(base_dir=folder))
    return pipe, checker


def test_end_to_end_each_evaluates_twice_and_says_so(tmp_path):
    """Big models: the passes run is evaluated before and after, not once per pass."""
    pipe, checker = _pipeline_end_to_end(tmp_path, [RemoveIdentitiesPass(), FoldConstantsPass(), CleanupPass()])
    verdicts = {r.name: r.check for r in pipe.reports}
    assert len(checker.memo) == 2
    assert verdicts["remove_identities"].startswith("within tolerance")
    assert "end to end over remove_identities + fold_constants" in verdicts["remove_identities"]
    assert verdicts["cleanup"] == "not modified"


def test_end_to_end_each_still_names_the_wrong_pass(tmp_path):
    with pytest.raises(PassError, match="pass negate_relu:"):
        _pipeline_end_to_end(tmp_path, [RemoveIdentitiesPass(), NegateReluPass(), CleanupPass()])
