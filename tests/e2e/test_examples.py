"""The three examples end to end with real torch export, onnxruntime and TensorRT-RTX CPU builds."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ONNX_STAGES, STAGES, run_cli
from tests.e2e.conftest import module_report
from trtforge.verify.run import NOT_EVALUATED

pytestmark = pytest.mark.slow  # the console script on real builds


@pytest.fixture
def built(built_examples):
    return built_examples


def _record(root, key):
    """A cache entry's files by name (the store's own layout: actions/ab/<key>.json -> blobs)."""
    doc = json.loads((root / ".trtforge-cache" / "actions" / key[:2] / f"{key}.json").read_text())
    return {n: root / ".trtforge-cache" / "blobs" / o["digest"][:2] / o["digest"] for n, o in doc["outputs"].items()}


_module = module_report


def test_every_engine_is_published_with_sidecar_and_bundle(built):
    root, report = built
    for m in report["modules"]:
        assert m["ok"], m["error"]
        assert all(m["stages"][s]["state"] == "ok" for s in STAGES), m["stages"]
        target = m["stages"]["build"]["meta"]["target"]["name"]
        folder = root / "engines" / target
        engine = (folder / f"{m['name']}.engine").read_bytes()
        assert len(engine) > 10_000
        side = json.loads((folder / f"{m['name']}.json").read_text())
        assert side["backend"] == "tensorrt-rtx" and side["backend_version"].startswith("1.")
        assert (folder / f"{m['name']}.inputs.npz").exists() and (folder / f"{m['name']}.reference.npz").exists()
    assert "| vit |" in (root / "engines" / "REPORT.md").read_text()


def test_vit_network_has_exactly_the_attention_scores_in_fp32(built):
    root, report = built
    vit = _module(report, "vit")
    layers = json.loads(_record(root, vit["stages"]["build"]["key"])["layers.json"].read_text())
    plan = vit["stages"]["precision_rules"]["meta"]["fp32"]
    score_matmuls = {n for n, v in plan.items() if v["op"] == "MatMul"}
    softmaxes = {n for n, v in plan.items() if v["op"] == "Softmax"}
    assert len(score_matmuls) == 4 and len(softmaxes) == 4  # 4 blocks, one score MatMul + Softmax each
    for layer in layers:
        if layer["type"] == "MATRIX_MULTIPLY":
            want = "FLOAT" if layer["name"] in score_matmuls else "HALF"
            assert layer["outputs"][0] == want, layer
        if layer["type"] == "SOFTMAX":
            assert layer["name"] in softmaxes and layer["outputs"][0] == "FLOAT", layer
    halves = [la for la in layers if la["type"] == "MATRIX_MULTIPLY" and la["outputs"][0] == "HALF"]
    assert len(halves) >= 4 * 5  # qkv, .V, proj, 2x mlp per block stay FP16
    assert vit["stages"]["precision_rules"]["meta"]["flops"]["fp16_share"] >= 0.99


def test_every_onnx_stage_is_within_tolerance_and_engine_not_run_is_said(built):
    _, report = built
    for m in report["modules"]:
        checks = m["stages"]["verify"]["meta"]["checks"]
        for stage in ONNX_STAGES:
            if stage != "precision_rules" and checks[stage]["status"] == "not evaluated":
                assert checks[stage]["reason"] == NOT_EVALUATED  # the final check passed (issue 25)
                continue
            assert checks[stage]["status"] == "ok", (m["name"], stage, checks[stage])
            for out in checks[stage]["outputs"].values():
                assert out["cosine"] > 0.999 and out["outside"] <= 1e-3
        assert "FP16-faithful" in checks["precision_rules"]["kind"]
        assert checks["engine"]["status"] == "not run"
        assert checks["engine"]["reason"].startswith("engine not run here: ")


def test_baked_resize_and_transpose_take_and_return_what_the_caller_holds(built):
    root, report = built
    dec = _module(report, "decoder")["stages"]["build"]["meta"]["io"]
    assert dec["inputs"][0]["shape"] == [1, 64, 16, 16]
    assert dec["outputs"][0] == {"name": "logits", "shape": [1, 8, 128, 128], "dtype": "HALF"}  # x4 of 32x32
    nchw = _module(report, "nchw_net")["stages"]["build"]["meta"]["io"]
    assert nchw["inputs"][0] == {"name": "image", "shape": [1, 64, 64, 3], "dtype": "HALF"}  # NHWC
    # the bundle is in the caller's layout too, and its reference came from torch's own ops
    folder = root / "engines" / _module(report, "decoder")["stages"]["build"]["meta"]["target"]["name"]
    with np.load(folder / "nchw_net.inputs.npz") as z:
        assert z["image"].shape == (1, 64, 64, 3)
    with np.load(folder / "decoder.reference.npz") as z:
        assert z["logits"].shape == (1, 8, 128, 128)


def test_second_run_is_all_cache_hits_without_torch_or_tensorrt(built):
    root, _ = built
    probe = (
        "import sys, json\nfrom trtforge.cli import main\n"
        "try:\n    main(['build', 'engines.toml', '--json'])\nexcept SystemExit as e:\n    code = e.code\n"
        "heavy = sorted(m for m in ('torch', 'tensorrt', 'tensorrt_rtx', 'polygraphy', 'onnxruntime') if m in sys.modules)\n"
        "print('HEAVY', json.dumps(heavy), code)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report_text, heavy_line = out.stdout.rsplit("HEAVY", 1)
    assert heavy_line.split()[0] == "[]", heavy_line
    report = json.loads(report_text)
    for m in report["modules"]:
        assert all(m["stages"][s]["state"] == "cached" for s in STAGES), m["stages"]


def test_explain_says_up_to_date_then_names_the_changed_field(built):
    root, _ = built
    out = run_cli("explain", "engines.toml", "--module", "decoder", cwd=root)
    assert out.returncode == 0 and out.stdout.count("up to date") == 5, out.stdout
    edited = root / "edited.toml"
    edited.write_text((root / "engines.toml").read_text().replace("scale = 4", "scale = 2"))
    out = run_cli("explain", "edited.toml", "--module", "decoder", cwd=root)
    assert "decoder export: will rebuild; changed: material.io_transforms[0].scale: 4.0 -> 2.0" in out.stdout, (
        out.stdout
    )
