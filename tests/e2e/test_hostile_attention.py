"""The FP16-hostile fixture through the console script and real TensorRT-RTX builds: without rules
the FP16-faithful check sees NaN and nothing is published (exit 3); with the attention rule (all or
auto) it passes and the engine is published."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow  # the console script on real builds

MANIFEST = """
[modules.hostile]
factory = "examples.hostile_attention:make_hostile"
inputs.tokens = {{ shape = [1, 16, 32], dtype = "float16" }}
outputs = ["pooled", "tokens_out"]
precision.rules = {rules}
"""


@pytest.fixture
def project(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _build(project, rules):
    (project / "engines.toml").write_text(MANIFEST.format(rules=rules))
    return run_cli("build", "--json", cwd=project)


def _engines(project):
    return sorted(p.name for p in (project / "engines").rglob("hostile.engine"))


def test_fails_without_rules_and_passes_with_the_attention_rule(project):
    bad = _build(project, "[]")
    assert bad.returncode == 3, bad.stderr
    assert "pooled" in bad.stderr and "NaN/Inf" in bad.stderr and "engine not published" in bad.stderr
    assert _engines(project) == []
    report = (project / "engines" / "REPORT.md").read_text()
    assert "pooled" in report and "NaN/Inf" in report

    # FP32 softmax alone is not enough: the FP16 score MatMul has already overflowed
    softmax_only = _build(project, '[{ rule = "softmax" }]')
    assert softmax_only.returncode == 3 and "NaN/Inf" in softmax_only.stderr

    good = _build(project, '[{ rule = "attention_score" }]')
    assert good.returncode == 0, good.stderr
    assert _engines(project) == ["hostile.engine"]
    doc = json.loads(good.stdout)
    text = json.dumps(doc)
    assert "node_softmax_1" in text  # the hostile block's softmax is in the plan

    # activation_range finds the same island from the FP32 activations alone
    ranged = _build(project, '[{ rule = "activation_range" }]')
    assert ranged.returncode == 0, ranged.stderr
    assert sorted(_plan(project)["fp32"]) == ["node_matmul_2", "node_mul_1", "node_softmax_1"]

    auto = _build(project, '[{ rule = "attention_score", mode = "auto" }]')
    assert auto.returncode == 0, auto.stderr
    plan = _plan(project)
    # only block 1 is hostile: its score MatMul, scale and softmax; blocks 0 and 2 stay FP16
    assert sorted(plan["fp32"]) == ["node_matmul_2", "node_mul_1", "node_softmax_1"]
    assert {m["node"] for m in plan["near_misses"]} == {"node_softmax", "node_softmax_2"}

    # the post-build check saw it in the parsed TensorRT-RTX network: 2 FLOAT layers, the rest HALF
    build = _newest(project, "build.json")
    assert build["fp32_layers"] == ["node_matmul_2", "node_softmax_1"]
    assert build["precision_counts"]["FLOAT"] == 2 and build["precision_counts"]["HALF"] > 10
    assert (
        "near miss `node_softmax_2`: attention_score — Softmax: FP32 scores reach only"
        in (project / "engines" / "REPORT.md").read_text()
    )


def _newest(project, name):
    """The stage output written last (views hold the stage outputs under their file names)."""
    newest = max((project / ".trtforge-cache" / "views").rglob(name), key=lambda p: p.stat().st_mtime)
    return json.loads(newest.read_text())


def _plan(project):
    return _newest(project, "plan.json")


def test_onnx_attention_op_at_opset_23_is_kept_fp32_whole(project):
    """torch exports SDPA as ONNX Attention at opset 23; the TensorRT-RTX parser accepts it.
    ONNX Runtime's CPU Attention kernel, run FP16-faithfully, overflows. Its CUDA Attention kernel
    (onnxruntime-gpu 1.31, on an H200) does not, presumably keeping the scores in FP32: where that
    check runs, the rule-less build passes and the report says which kernel judged it."""
    extra = "factory_args = { sdpa = true }\nexport = { opset = 23 }\n"
    (project / "engines.toml").write_text(MANIFEST.format(rules="[]").replace("inputs.tokens", extra + "inputs.tokens"))
    bad = run_cli("build", cwd=project)
    check = json.loads((project / "engines" / "report.json").read_text())["modules"][0]["stages"]["verify"]["meta"][
        "checks"
    ]["precision_rules"]
    if check["kind"].startswith("onnxruntime CUDA"):
        assert bad.returncode == 0 and check["status"] == "ok", bad.stderr
        shutil.rmtree(project / "engines")
    else:
        assert bad.returncode == 3 and "NaN/Inf" in bad.stderr and _engines(project) == []
    (project / "engines.toml").write_text(
        MANIFEST.format(rules='[{ rule = "attention_score" }]').replace("inputs.tokens", extra + "inputs.tokens")
    )
    good = run_cli("build", cwd=project)
    assert good.returncode == 0, good.stderr
    plan = _plan(project)
    assert {v["op"] for v in plan["fp32"].values()} == {"Attention"} and len(plan["fp32"]) == 3
    assert 0.85 < plan["flops"]["fp16_share"] < 0.95  # Attention's FLOPs are counted, and FP32
