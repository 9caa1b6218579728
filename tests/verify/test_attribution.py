"""A verification failure is blamed on the stage that introduced it: an export bug on export, a
faulty user pass on graph_passes, a precision plan that leaves FP16 scores overflowing on
precision_rules. Each ends with exit 3, is named in REPORT.md and verify.json, and nothing of it
is published; the healthy module beside them is published."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ONNX_STAGES, run_cli
from tests.verify.faults import faults_project
from trtforge.verify.run import NOT_EVALUATED

pytestmark = pytest.mark.slow  # the console script on real builds


MANIFEST = """
[defaults]
build = { backend = "tensorrt-rtx" }

[modules.healthy]
factory = "faults.modules:make_attention"
inputs.x = { shape = [1, 16, 32], dtype = "float16" }
outputs = ["y"]
verify.random_inputs = 2

[modules.export_bug]
factory = "faults.modules:make_arange"
inputs.x = { shape = [1, 4096], dtype = "float16" }
outputs = ["y"]

[modules.pass_bug]
factory = "faults.modules:make_attention"
inputs.x = { shape = [1, 16, 32], dtype = "float16" }
outputs = ["y"]
passes = [{ name = "faults.passes:ScaleOutputPass", output = "y" }, { name = "cleanup" }]
pass_check = "off"  # the per-pass meaning check would stop it first (tests/graph_passes); here the chain must

[modules.precision_bug]
factory = "faults.modules:make_attention"
inputs.x = { shape = [1, 16, 32], dtype = "float16" }
outputs = ["y"]
precision.rules = []
"""

EXPECTED = {"export_bug": "export", "pass_bug": "graph_passes", "precision_bug": "precision_rules"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    faults_project(root, MANIFEST)
    proc = run_cli("build", "engines.toml", cwd=root)
    return root, proc, json.loads((root / "engines" / "report.json").read_text())


def _module(report, name):
    return next(m for m in report["modules"] if m["name"] == name)


def test_build_exits_3_naming_each_failed_module(built):
    _, proc, _ = built
    assert proc.returncode == 3, proc.stderr
    for name, stage in EXPECTED.items():
        assert f"module '{name}': verification failed at stage '{stage}'" in proc.stderr


@pytest.mark.parametrize("name,stage", sorted(EXPECTED.items()))
def test_blame_in_verify_json(built, name, stage):
    _, _, report = built
    verify = _module(report, name)["stages"]["verify"]
    assert verify["state"] == "failed"
    assert verify["meta"]["blame"] == stage
    for earlier in ONNX_STAGES[: ONNX_STAGES.index(stage)]:  # stages before the culprit were checked and passed
        assert verify["meta"]["checks"][earlier]["status"] == "ok"
    assert verify["meta"]["checks"][stage]["status"] == "failed"


def test_precision_bug_is_caught_only_by_the_fp16_faithful_check(built):
    _, _, report = built
    checks = _module(report, "precision_bug")["stages"]["verify"]["meta"]["checks"]
    assert "widened to FP32" in checks["graph_passes"]["kind"]  # the function, not its FP16 range
    assert "FP16-faithful" in checks["precision_rules"]["kind"]
    assert "NaN/Inf" in checks["precision_rules"]["reason"] or "CUDA" in checks["precision_rules"]["kind"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_nothing_published_for_a_failed_module(built, name):
    root, _, report = built
    assert _module(report, name)["published"] == []
    assert not list((root / "engines").rglob(f"{name}.*"))


def test_healthy_module_published_and_checked_on_every_input_set(built):
    root, _, report = built
    healthy = _module(report, "healthy")
    assert healthy["ok"] and healthy["published"]
    meta = healthy["stages"]["verify"]["meta"]
    assert meta["input_sets"] == ["example", "random 1", "random 2"]
    assert meta["checks"]["precision_rules"]["outputs"]["y"]["sets"] == 3
    assert sum(meta["checks"]["precision_rules"]["outputs"]["y"]["hist"]) == 3 * 16 * 32
    for stage in ONNX_STAGES[:-1]:  # the final check passed: they would only have named a stage
        assert meta["checks"][stage]["reason"] == NOT_EVALUATED
    assert list((root / "engines").rglob("healthy.engine"))


def test_report_md_names_the_blamed_stage(built):
    root, _, _ = built
    text = (root / "engines" / "REPORT.md").read_text()
    for name, stage in EXPECTED.items():
        assert f"verification failed at stage '{stage}'" in text.split(f"## {name}")[1].split("## ")[0]
