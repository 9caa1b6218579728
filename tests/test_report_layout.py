"""report.html's layout (issue 29): a table of contents whose links resolve, one shared export /
passes / precision section per module built for several targets (not one per target), no SVG
label clipped at its right edge ("4/108 FP3"), no exporter-internal scope shown as a block.

Browser-free checks run everywhere (anchors against ids; label widths by report_html.text_width,
an upper estimate); the same properties are measured in headless Chromium where one can start
(playwright), and skipped with the reason otherwise."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.conftest import REPO, run_cli
from tests.report_layout import anchor_problems, browser, browser_problems, overflow_problems
from trtforge.driver.report.html import render, text_width

HIST = [0, 0, 3, 40, 500, 20, 1, 0, 0, 0]


def _check(status, kind, output, hist=HIST):
    metrics = {"max_abs": 0.01, "rel_err": 0.001, "cosine": 0.99999, "outside": 0.0, "hist": hist, "nonfinite": 0}
    return {"status": status, "kind": kind, "outputs": {output: metrics}}


def _result(name, target, output, block):
    nodes = [[f"node_{i}", "MatMul", "fp32" if i < 4 else "fp16"] for i in range(108)]
    checks = {s: _check("passed", "onnxruntime cpu", output) for s in ("export", "graph_passes", "precision_rules")}
    checks["engine"] = {"status": "not run", "kind": "tensorrt-rtx", "reason": "no GPU here"}
    stage = {"state": "ok", "reason": "", "seconds": 1.25, "key": "k", "meta": {}}
    stages = {s: dict(stage) for s in ("export", "graph_passes", "precision_rules", "build")}
    stages["precision_rules"] = {**stage, "meta": {"fp32": {f"node_{i}": "rule" for i in range(4)}}}
    verify_meta = {
        "checks": checks,
        "chain": ["export", "graph_passes", "precision_rules", "engine"],
        "precision_map": [{"block": block, "nodes": nodes}, {"block": "(top level)", "nodes": nodes[:5]}],
    }
    stages["verify"] = {**stage, "meta": verify_meta}
    return {
        "name": f"{target}/{name}" if target else name,
        **({"target": target} if target else {}),
        "ok": True,
        "error": None,
        "published": [f"engines/{target or 'rtx'}/{name}.engine"],
        "notes": [],
        "warnings": ["8 FP32 island(s) in the FP16 export: 8 in diffusers library code (Timesteps at time_proj)"],
        "stages": stages,
    }


REPORT = {
    "modules": [
        _result("unet", "ampere_ada", "noise_pred", "down_blocks.1.attentions.0.transformer_blocks.0"),
        _result("unet", "blackwell_consumer_with_a_long_name", "noise_pred", "down_blocks.1"),
        _result("bert", None, "logits_of_a_classifier_with_a_rather_long_output_name", "encoder.layer.0"),
    ]
}


def test_contents_links_resolve_and_every_module_has_one_section():
    html = render(REPORT)
    assert anchor_problems(html) == []
    nav = html.split("<nav id='contents'>")[1].split("</nav>")[0]
    assert "href='#module-unet'" in nav and "href='#module-bert'" in nav
    assert "href='#target-ampere_ada-unet'" in nav and "href='#target-blackwell_consumer_with_a_long_name-unet'" in nav
    assert html.count("<h2 id='module-unet'>") == 1
    unet = html.split("<h2 id='module-unet'>")[1].split("<h2 ")[0]
    assert unet.count("shared by every target") == 1
    assert unet.count("Precision per block") == 1  # not once per target
    assert unet.count("warning: 8 FP32 island(s)") == 1
    assert unet.count("<h3 id='target-") == 2
    # the ONNX checks' histograms once (shared), the engine check per target
    assert unet.count("share of elements per |error| decade") == 1


def test_no_label_is_clipped_at_the_right_edge():
    html = render(REPORT)
    assert overflow_problems(html) == []
    assert ">4/108 FP32</text>" in html  # the label the issue saw clipped ("4/108 FP3")


def test_the_layout_check_itself_catches_a_clipped_label():
    html = "<svg width='100' height='20'><text x='60' y='10'>4/108 FP32</text></svg>"
    (problem,) = overflow_problems(html)
    assert problem.startswith("'4/108 FP32' spans 60..") and problem.endswith("in an SVG 100 wide")
    assert anchor_problems("<a href='#nowhere'>x</a>") == ["link #nowhere has no target"]
    assert text_width("4/108 FP32", 12) > 60  # what Chromium draws at 12px system-ui is ~58


def test_in_a_browser_the_synthetic_report_holds(tmp_path):
    exe, why = browser()
    if why:
        pytest.skip(why)
    path = tmp_path / "report.html"
    path.write_text(render(REPORT))
    assert browser_problems(path, exe) == []


MANIFEST = """
[defaults]
build = { backend = "tensorrt-rtx" }

[targets.ampere]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.6"]

[targets.ada]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.9"]

[modules.vit]
factory = "examples.vit:make_vit"
factory_args = { depth = 2, dim = 32, heads = 2, patch = 16 }
inputs.image = { shape = [1, 3, 64, 64], dtype = "float16" }
"""


@pytest.mark.slow  # the console script, two real engine builds
def test_a_real_two_target_report_holds_its_layout(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "engines.toml").write_text(MANIFEST)
    r = run_cli("build", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    path = tmp_path / "engines" / "report.html"
    html = path.read_text()
    assert anchor_problems(html) == [] and overflow_problems(html) == []
    assert html.count("shared by every target") == 1 and html.count("Precision per block") == 1
    report = json.loads((tmp_path / "engines" / "report.json").read_text())
    blocks = {b["block"] for m in report["modules"] for b in m["stages"]["verify"]["meta"]["precision_map"]}
    assert not any(re.match(r"_|.*_nn_module_stack", b) for b in blocks), blocks
    exe, why = browser()
    if why:
        pytest.skip(f"browser-free checks passed; {why}")
    assert browser_problems(path, exe) == []
