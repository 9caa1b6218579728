"""One evaluation per meaning (issue 25, item 2): the verify stage runs the final checks (the
FP16-faithful precision graph, the engine) first; the export and pass graphs' FP32 checks only name
the stage a failure started in, so where the final check passed they are not evaluated, and say so.
Blame stays as exact as before: a broken export, a broken user pass (checked per pass, or only by
the chain) and an FP16-hostile precision plan are each named as the base code names them. Every
module has a random input set, which the graph_passes stage never evaluated (its evaluated_*.npz
hold the example set only), so the earlier checks would cost an evaluation each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import ONNX_STAGES
from tests.verify.faults import faults_project
from trtforge.cache import Store
from trtforge.driver.lifecycle import build_module
from trtforge.manifest import load_manifest

pytestmark = pytest.mark.slow  # real engine builds, in-process

MANIFEST = """
[defaults]
build = { backend = "tensorrt-rtx" }

[modules.healthy]
factory = "faults.modules:make_attention"
inputs.x = { shape = [1, 16, 32], dtype = "float16" }
outputs = ["y"]
verify.random_inputs = 1

[modules.export_bug]
factory = "faults.modules:make_arange"
inputs.x = { shape = [1, 4096], dtype = "float16" }
outputs = ["y"]
verify.random_inputs = 1

[modules.export_bug_no_passes]
factory = "faults.modules:make_arange"
inputs.x = { shape = [1, 4096], dtype = "float16" }
outputs = ["y"]
passes = []
verify.random_inputs = 1

[modules.pass_bug]
factory = "faults.modules:make_attention"
inputs.x = { shape = [1, 16, 32], dtype = "float16" }
outputs = ["y"]
passes = [{ name = "faults.passes:ScaleOutputPass", output = "y" }, { name = "cleanup" }]
pass_check = "off"  # only the verify chain can catch it
verify.random_inputs = 1

[modules.pass_bug_checked]
factory = "faults.modules:make_attention"
inputs.x = { shape = [1, 16, 32], dtype = "float16" }
outputs = ["y"]
passes = [{ name = "faults.passes:ScaleOutputPass", output = "y" }, { name = "cleanup" }]
verify.random_inputs = 1

[modules.precision_bug]
factory = "faults.modules:make_attention"
inputs.x = { shape = [1, 16, 32], dtype = "float16" }
outputs = ["y"]
precision.rules = []
verify.random_inputs = 1
"""

BLAME = {"export_bug": "export", "pass_bug": "graph_passes", "precision_bug": "precision_rules"}


def _count_evaluations(monkeypatch, log: Path) -> None:
    """Every evaluation (the stage children are forked from this process, so they inherit the
    patch) appends its graph's folder and mode to `log`, with the stage package that asked."""
    from trtforge.graphs.evaluate import Evaluator

    run = Evaluator.run

    def counted(self, feeds, keep=(), observe=None):
        f, stage = sys._getframe(1), "?"
        while f is not None and stage == "?":
            name = f.f_globals.get("__name__", "")
            stage = next(
                (s for s in ("graph_passes", "precision_rules", "verify") if name.startswith(f"trtforge.{s}")), "?"
            )
            f = f.f_back
        with open(log, "a") as out:
            out.write(json.dumps({"stage": stage, "folder": str(self.base_dir), "mode": self.mode}) + "\n")
        return run(self, feeds, keep=keep, observe=observe)

    monkeypatch.setattr(Evaluator, "run", counted)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("lazy")
    faults_project(root, MANIFEST)
    log = root / "evaluations.jsonl"
    manifest, store = load_manifest(root / "engines.toml"), Store(root / "cache")
    results, rows = {}, {}  # per module: its result, the evaluations its build ran
    with pytest.MonkeyPatch.context() as mp:
        _count_evaluations(mp, log)
        for m in manifest.modules:  # one at a time: the log's new lines are this module's
            log.write_text("")
            results[m.name] = build_module(store, manifest, m)
            rows[m.name] = [json.loads(line) for line in log.read_text().splitlines()]
    return store, results, rows


def _folder(store: Store, result, stage: str) -> str:
    return str(store.root / "views" / result.records[stage].key)


def test_healthy_module_evaluates_only_the_published_graph_in_verify(built):
    store, results, rows = built
    healthy = results["healthy"]
    assert healthy.ok, healthy.error
    meta = healthy.records["verify"].meta
    for stage in ("export", "graph_passes"):
        assert meta["checks"][stage]["status"] == "not evaluated"
        assert meta["checks"][stage]["reason"] == "not evaluated: the final check passed"
    assert meta["checks"]["precision_rules"]["status"] == "ok"
    assert meta["checks"]["precision_rules"]["outputs"]["y"]["sets"] == 2
    assert meta["chain"] == [*ONNX_STAGES, "engine"] and meta["passed"] and meta["blame"] is None
    in_verify = [r for r in rows["healthy"] if r["stage"] == "verify"]
    earlier = {_folder(store, healthy, s) for s in ("export", "graph_passes")}
    assert not [r for r in in_verify if r["folder"] in earlier]  # base: the random set, once per graph
    published = [r for r in in_verify if r["folder"] == _folder(store, healthy, "precision_rules")]
    assert [r["mode"] for r in published] == ["fp16", "fp16"]  # the example set and the random one


@pytest.mark.parametrize("name,stage", sorted(BLAME.items()))
def test_a_failure_evaluates_the_earlier_checks_and_blames_as_before(built, name, stage):
    store, results, rows = built
    result = results[name]
    meta = result.records["verify"].meta
    assert not result.ok and meta["blame"] == stage and not meta["passed"]
    assert f"verification failed at stage '{stage}'" in result.error.one_line()
    for s in ONNX_STAGES[: ONNX_STAGES.index(stage)]:  # checked on both sets, and passed
        assert meta["checks"][s]["status"] == "ok" and meta["checks"][s]["outputs"]["y"]["sets"] == 2
    assert meta["checks"][stage]["status"] == "failed"
    assert all(c["status"] != "not evaluated" for c in meta["checks"].values())


def test_a_pass_the_per_pass_check_catches_is_still_named_in_graph_passes(built):
    _, results, _ = built
    result = results["pass_bug_checked"]
    assert result.stages["graph_passes"].state == "failed" and "verify" not in result.records
    assert "pass scale_output" in result.error.one_line()


def test_a_pass_graph_that_is_the_export_graph_is_not_evaluated_again(built):
    """No pass modified the graph: on a failure, its check reads the export check's outputs (the
    same graph on the same feeds) instead of evaluating it a second time."""
    store, results, rows = built
    result = results["export_bug_no_passes"]
    meta = result.records["verify"].meta
    assert meta["blame"] == "export" and meta["checks"]["graph_passes"]["status"] == "failed"
    assert meta["checks"]["graph_passes"]["outputs"]["y"]["sets"] == 2
    in_verify = [r for r in rows["export_bug_no_passes"] if r["stage"] == "verify"]
    assert [r["mode"] for r in in_verify if r["folder"] == _folder(store, result, "export")] == ["fp32", "fp32"]
    assert not [r for r in in_verify if r["folder"] == _folder(store, result, "graph_passes")]  # base: 2
