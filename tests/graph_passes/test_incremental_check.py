"""Incremental meaning checks (graph_passes/incremental.py): the graph after a pass runs only where
it differs from the graph before, in one sweep with it; the verdicts stay as strict."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import write_model
from trtforge.errors import PassError
from trtforge.graph_passes.base import GraphPass, PassContext, Pipeline
from trtforge.graph_passes.cleanup import CleanupPass
from trtforge.graph_passes.fold_constants import FoldConstantsPass
from trtforge.graph_passes.meaning import OrtChecker
from trtforge.graph_passes.remove_identities import RemoveIdentitiesPass
from trtforge.graphs.files import import_graph, load_graph_proto

N = 40  # blocks of (Mul by a constant, Abs): 80 nodes, plus an Identity in the middle


def _chain() -> onnx.ModelProto:
    nodes, inits = [], []
    t = "x"
    for i in range(N):
        inits.append(helper.make_tensor(f"c{i}", TensorProto.FLOAT, [1], [1.0 + 0.01 * i]))
        nodes.append(helper.make_node("Mul", [t, f"c{i}"], [f"m{i}"], name=f"mul{i}"))
        nodes.append(helper.make_node("Abs", [f"m{i}"], [f"t{i}"], name=f"abs{i}"))
        t = f"t{i}"
        if i == N // 2:
            nodes.append(helper.make_node("Identity", [t], ["ident"], name="ident"))
            t = "ident"
    # a branch that folds: k = c0 * c1 (constants only), read by the last node
    nodes.append(helper.make_node("Mul", ["c0", "c1"], ["k"], name="fold_me"))
    nodes.append(helper.make_node("Mul", [t, "k"], ["y"], name="last"))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


class MulToAddPass(GraphPass):
    """Exact rewrite of one node in the middle: Mul(a, c) with c == 2 ... here `mul30` becomes
    Mul(c30, a) (operands swapped: the same bits), a node the sweep must run and find agreeing."""

    name = "swap_operands"

    def apply(self, graph, ctx):
        for n in graph.nodes:
            if n.name == "mul30":
                n.inputs.reverse()
                return True
        return False


class NudgePass(GraphPass):
    """A wrong 'restructuring' of one node: the constant of mul30 is nudged by one part in 1e6."""

    name = "nudge_constant"

    def __init__(self, exact: bool = True, by: float = 1e-6):
        self.exact, self.by = exact, by

    def apply(self, graph, ctx):
        import onnx_graphsurgeon as gs

        for n in graph.nodes:
            if n.name == "mul30":
                c = n.inputs[1]
                n.inputs[1] = gs.Constant("c30_nudged", np.asarray(c.values, np.float32) * (1 + self.by))
                return True
        return False


def _run(tmp_path: Path, passes, check="pipeline", incremental=True, end_to_end=False):
    folder = write_model(_chain(), tmp_path / "m")
    model = load_graph_proto(folder)
    graph = import_graph(model, folder)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 8)).astype(np.float32)
    checker = OrtChecker(folder, [{"x": x}], like=model, incremental=incremental)
    pipe = Pipeline(list(passes), check=check, checker=checker, snapshot=checker.snapshot, end_to_end=end_to_end)
    pipe.run(graph, PassContext(base_dir=folder))
    return pipe, checker


def test_one_changed_node_evaluates_only_that_node(tmp_path):
    """The cone: mul30 runs in the graph after; of the graph before, only what it reads and its
    own output (mul0 .. mul30 and the Identity); nothing downstream of it in either graph."""
    pipe, checker = _run(tmp_path, [MulToAddPass()])
    res = checker.last_cone
    total = 2 * N + 3
    assert res.nodes_after == 1  # its output agreed: nothing after it ran
    assert res.nodes_before == 2 * 30 + 2 < total
    assert checker.nodes_evaluated == res.nodes_before + 1  # a full check ran 2 * total
    assert checker.last_joint is None  # the sweep of the whole graph before did not run
    assert pipe.reports[0].check.startswith("pipeline: identical; 1 of")
    assert "62 of 83 before" in pipe.reports[0].check


def test_a_change_that_does_not_agree_again_runs_the_joint_sweep(tmp_path):
    """A changed node whose output moves: the cone cannot show identity; the joint sweep runs the
    whole graph before and compares the outputs under the pass's own tolerance."""
    pipe, checker = _run(tmp_path, [NudgePass(exact=False, by=1e-7)])
    assert checker.last_joint is not None and checker.last_joint.nodes_before == 2 * N + 3
    assert pipe.reports[0].check.startswith("pipeline: within tolerance")


def test_removed_identity_runs_only_its_consumer(tmp_path):
    pipe, checker = _run(tmp_path, [RemoveIdentitiesPass(), CleanupPass()])
    assert checker.last_cone.nodes_after == 1  # mul21, now reading t20 instead of ident
    assert pipe.reports[0].check.startswith("pipeline: identical")


def test_results_equal_a_full_check(tmp_path):
    """The after outputs from the sweep are what a full evaluation of the graph after gives."""
    _, inc = _run(tmp_path / "a", [NudgePass(exact=False)])
    _, full = _run(tmp_path / "b", [NudgePass(exact=False)], incremental=False)
    assert inc.nodes_evaluated < full.nodes_evaluated
    (ka, (_, a)), (kb, (_, b)) = list(inc.memo.items())[-1], list(full.memo.items())[-1]
    assert ka == kb and np.array_equal(a["y"], b["y"])


@pytest.mark.parametrize(
    "check,end_to_end,blamed",
    [
        ("each", False, "nudge_constant"),
        ("each", True, "nudge_constant"),  # a big model: end to end, then localised
        ("pipeline", False, "remove_identities \\+ nudge_constant"),
    ],
)
def test_an_exact_pass_that_moves_a_value_is_named(tmp_path, check, end_to_end, blamed):
    with pytest.raises(PassError, match=f"pass {blamed}: output 'y' is not identical"):
        _run(tmp_path, [RemoveIdentitiesPass(), NudgePass(), CleanupPass()], check=check, end_to_end=end_to_end)


def test_a_folding_pass_is_held_to_its_tolerance(tmp_path):
    pipe, checker = _run(tmp_path, [FoldConstantsPass(), CleanupPass()])
    assert pipe.reports[0].check.startswith("pipeline: within tolerance")
    assert checker.last_cone.nodes_after < checker.last_cone.nodes_before  # k folded in FP32: identical
    with pytest.raises(PassError, match="pass nudge_constant:.*beyond the folding tolerance"):
        _run(tmp_path / "b", [NudgePass(exact=False, by=0.05)])


def test_a_pass_that_changes_nothing_costs_nothing(tmp_path):
    pipe, checker = _run(tmp_path, [CleanupPass()])
    assert checker.nodes_evaluated == 0
    assert pipe.reports[0].check == "pipeline: not modified"


class ReorderPass(GraphPass):
    """Reverses the node list (the evaluator sorts it again): the same nodes, in another order."""

    name = "reorder"

    def apply(self, graph, ctx):
        graph.nodes.reverse()
        return True


@pytest.mark.parametrize("incremental", [None, True])
def test_a_pass_that_keeps_every_node_is_not_evaluated(tmp_path, incremental):
    """Checked pass by pass: the graph before is at hand, the graph after is node for node the
    same, so its outputs are the before's (small graphs, whole-graph runs, included)."""
    pipe, checker = _run(tmp_path, [RemoveIdentitiesPass(), ReorderPass()], check="each", incremental=incremental)
    verdicts = {r.name: r.check for r in pipe.reports}
    total = 2 * N + 3
    if incremental is None:  # small graph: both graphs whole in remove_identities' check
        assert verdicts["reorder"] == "identical; the same nodes as before the pass, not evaluated after it"
        assert checker.nodes_evaluated == total + (total - 1)
    else:  # node by node: mul21 (now reading t20) and the cone of the graph before up to mul21
        assert verdicts["reorder"] == "identical; the same nodes as before the pass, nothing evaluated"
        assert checker.nodes_evaluated == 1 + (2 * (N // 2 + 1) + 2)


def _two_branches() -> onnx.ModelProto:
    """y = f(x) + g(x), two chains of 20 Sin nodes on 256x256 tensors (256 KiB each)."""
    nodes = []
    for b in ("p", "q"):
        t = "x"
        for i in range(20):
            nodes.append(helper.make_node("Sin", [t], [f"{b}{i}"], name=f"{b}{i}"))
            t = f"{b}{i}"
    nodes.append(helper.make_node("Add", ["p19", "q19"], ["y"], name="add"))
    graph = helper.make_graph(
        nodes,
        "branches",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256, 256])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


def test_the_sweep_holds_no_more_than_a_full_evaluation_when_the_order_changes(tmp_path):
    from trtforge.graph_passes.incremental import evaluate_jointly
    from trtforge.graph_passes.meaning import snapshot
    from trtforge.graphs.evaluate import Evaluator

    folder = write_model(_two_branches(), tmp_path / "m")
    before = load_graph_proto(folder)
    graph = import_graph(before, folder)
    for n in graph.nodes:
        if n.name in ("p0", "q0"):
            n.op = "Cos"  # the region: both branches, whole (nothing agrees again)
    graph.nodes.sort(key=lambda n: not n.name.startswith("q"))  # the graph after runs q first
    after = snapshot(graph, before)
    x = {"x": np.random.default_rng(0).uniform(-1, 1, (256, 256)).astype(np.float32)}
    full = Evaluator(after, folder, "fp32")
    full.run(x, observe=lambda n, v: None)  # node by node, as the sweep runs
    res = evaluate_jointly(before, after, folder, x)
    assert res.nodes_after == 41 and res.region == 41
    assert np.array_equal(res.after["y"], Evaluator(after, folder, "fp32").run(x)["y"])
    # both graphs' live tensors, nothing held for the region: ~2x one evaluation, not 20 tensors
    assert res.peak_bytes <= 2 * full.peak_bytes + (256 << 10)


def test_stage_checks_a_fold_by_its_cone(tmp_path):
    """run_pipeline, incremental: fold_constants' FP16 storage is still rounded in the graph
    before (an FP16 graph), so the Mul reading the folded constant computes what it did before:
    only it and its cone run, less than one graph's nodes in all; no graph ran whole, so nothing
    is kept for the verify stage (its export and pass checks evaluate only if a final check fails)."""
    from tests.conftest import onnx_model
    from trtforge.data.tensors import save_arrays
    from trtforge.graph_passes.run import recorded_inputs, run_pipeline
    from trtforge.graphs.files import EVALUATED

    text = """<ir_version: 10, opset_import: ["" : 20]>
    g (float16[2,4] x) => (float16[2,4] y) {
      a = Identity(x)
      k32 = Constant<value = float[1] {2.5}>()
      k = Cast<to = 10>(k32)
      k2 = Mul(k, k)
      b = Mul(a, k2)
      c = Relu(b)
      y = Sin(c)
    }"""
    folder = write_model(onnx_model(text), tmp_path / "m")
    save_arrays(folder / "inputs.npz", {"x": np.linspace(-1, 1, 8, dtype=np.float16).reshape(2, 4)})
    out = tmp_path / "out"
    out.mkdir()
    steps = [{"name": "remove_identities"}, {"name": "fold_constants"}, {"name": "cleanup"}]
    meta = run_pipeline(
        folder, out, steps, check="each", recorded=recorded_inputs(folder), end_to_end=True, incremental=True
    )
    check = meta["passes"][0]["check"]
    assert check.startswith("within tolerance") and "folded tensor(s) held at their FP16 storage" in check
    assert "1 of 3 node(s) after the pass evaluated and 5 of 7 before" in check
    assert meta["check_nodes_evaluated"] == 6 < meta["nodes_before"]
    assert not (out / EVALUATED["graph_passes"]).exists() and not (out / EVALUATED["export"]).exists()


def test_a_reorder_first_evaluates_only_the_graph_before(tmp_path):
    """The graph before has not run yet: it runs (the export check needs it anyway), once."""
    pipe, checker = _run(tmp_path, [ReorderPass()], check="each", incremental=None)
    assert pipe.reports[0].check == "identical; the same nodes as before the pass, not evaluated after it"
    assert checker.nodes_evaluated == 2 * N + 3
    assert len(checker.memo) == 2  # both graphs' outputs, for the verify stage


class FoldOutputPass(GraphPass):
    """Turns the graph output's producer into a constant holding its value for the recorded input
    (wrong in general, right on these feeds): the output becomes an initializer."""

    name = "output_to_constant"
    exact = False

    def __init__(self, value=None):
        self.value = value

    def apply(self, graph, ctx):
        import onnx_graphsurgeon as gs

        y = graph.outputs[0]
        last = y.inputs[0]
        last.outputs.clear()
        const = gs.Constant("y", self.value)
        graph.outputs[0] = const
        graph.cleanup()
        return True


def test_an_output_folded_to_a_constant_is_compared(tmp_path):
    from trtforge.graph_passes.meaning import feeds_for
    from trtforge.graphs.evaluate import Evaluator

    folder = write_model(_chain(), tmp_path / "probe")
    model = load_graph_proto(folder)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 8)).astype(np.float32)
    y = Evaluator(model, folder, "fp32").run(feeds_for(model, [{"x": x}]))["y"]
    pipe, checker = _run(tmp_path, [FoldOutputPass(y)])
    assert pipe.reports[0].check.startswith("pipeline: within tolerance (max abs diff 0)")
    with pytest.raises(PassError, match="pass output_to_constant: output 'y' moved beyond"):
        _run(tmp_path / "b", [FoldOutputPass(y * 2)])


def test_a_change_that_spreads_everywhere_falls_back_to_one_evaluation_at_a_time(tmp_path, monkeypatch):
    """Nothing agrees again: past EXTRA_SHARE of the before's live tensors the sweep drops the
    region and runs the graph after whole, so memory stays near one evaluation's."""
    from trtforge.graph_passes import incremental
    from trtforge.graph_passes.incremental import evaluate_jointly
    from trtforge.graph_passes.meaning import snapshot
    from trtforge.graphs.evaluate import Evaluator

    monkeypatch.setattr(incremental, "EXTRA_FLOOR", 0)
    folder = write_model(_two_branches(), tmp_path / "m")
    before = load_graph_proto(folder)
    graph = import_graph(before, folder)
    for n in graph.nodes:
        if n.name in ("p0", "q0"):
            n.op = "Cos"
    after = snapshot(graph, before)
    x = {"x": np.random.default_rng(0).uniform(-1, 1, (256, 256)).astype(np.float32)}
    full = Evaluator(after, folder, "fp32")
    want = full.run(x, observe=lambda n, v: None)["y"]
    res = evaluate_jointly(before, after, folder, x)
    assert res.gave_up and res.nodes_after == 41
    assert np.array_equal(res.after["y"], want)
    assert res.peak_bytes <= 1.25 * full.peak_bytes + (512 << 10)
