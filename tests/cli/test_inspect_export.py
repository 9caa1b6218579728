"""`trtforge inspect` (an engine file, MODULE[:STAGE]) and `trtforge export` (a stage's ONNX as
standalone single-link files), on a real build of the example manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _engine(root: Path, name: str) -> Path:
    (path,) = (root / "engines").glob(f"*/{name}.engine")
    return path


def test_inspect_an_engine_file_reads_its_sidecar_and_the_cache(built_examples):
    root, _ = built_examples
    engine = _engine(root, "vit")
    r = run_cli("inspect", str(engine.relative_to(root)), "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["module"] == "vit" and info["stage"] == "build"
    assert info["io"]["inputs"] == [{"name": "image", "shape": [1, 3, 64, 64], "dtype": "HALF"}]
    assert {o["name"] for o in info["io"]["outputs"]} == {"logits", "tokens"}
    # layers.json from the build record: counts add up, FP32 islands among the dtypes
    assert sum(info["layers"]["by_type"].values()) == info["layers"]["total"] > 0
    assert info["layers"]["by_dtype"].get("FLOAT", 0) >= len(info["fp32_layers"]) > 0
    # every FP32 layer of vit is an attention score chain the default rule planned
    assert {f["rule"] for f in info["fp32_layers"]} == {"attention_score"}
    assert info["sizes"]["vit.engine"] == engine.stat().st_size
    assert info["versions"]["backend"] == "tensorrt-rtx" and info["versions"]["backend_version"]
    assert info["verification"]["export"]["status"] == "ok"
    text = run_cli("inspect", str(engine), cwd=root)
    assert text.returncode == 0, text.stderr
    assert "inputs: image HALF [1, 3, 64, 64]" in text.stdout and "rule attention_score" in text.stdout


def test_inspect_a_cached_stage_and_a_missing_one(built_examples):
    root, _ = built_examples
    r = run_cli("inspect", "vit:precision_rules", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["io"]["inputs"][0]["name"] == "image" and info["io"]["inputs"][0]["dtype"] == "HALF"
    assert info["layers"]["by_type"]["MatMul"] > 0 and info["layers"]["by_type"]["Cast"] > 0
    assert info["fp32_layers"] and all(f["rule"] == "attention_score" for f in info["fp32_layers"])
    assert info["verification"]["precision_rules"]["status"] == "ok"
    build = run_cli("inspect", "decoder", cwd=root)  # stage defaults to build
    assert build.returncode == 0 and "decoder:build: module decoder, stage build" in build.stdout
    bad = run_cli("inspect", "vitt:build", cwd=root)
    assert bad.returncode == 2 and bad.stderr.startswith("trtforge: error: ") and "did you mean 'vit'" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("stage", ["export", "graph_passes", "precision_rules"])
def test_export_writes_single_link_copies_that_onnx_and_polygraphy_open(built_examples, tmp_path, stage):
    root, _ = built_examples
    out = tmp_path / stage
    r = run_cli("export", "vit", "--stage", stage, "-o", str(out), cwd=root)
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["model.onnx", "model.onnx.data"]
    assert all(os.stat(out / f).st_nlink == 1 for f in files)  # onnx 1.23 refuses hard-linked data
    model = onnx.load(str(out / "model.onnx"))  # external data included
    onnx.checker.check_model(str(out / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["image"]
    poly = Path(sys.executable).parent / "polygraphy"
    p = subprocess.run(
        [str(poly), "inspect", "model", str(out / "model.onnx")], capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "image" in p.stdout and "logits" in p.stdout


def test_export_refuses_a_stage_without_onnx_in_one_line(built_examples, tmp_path):
    root, _ = built_examples
    r = run_cli("export", "vit", "--stage", "build", "-o", str(tmp_path / "x"), cwd=root)
    assert r.returncode == 2 and r.stderr.startswith("trtforge: error: ") and "--stage" in r.stderr
    assert not (tmp_path / "x").exists()
