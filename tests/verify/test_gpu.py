"""On a machine with an NVIDIA GPU (skipped elsewhere): export and the FP32 reference run on CUDA,
and the engine check either runs (a GPU TensorRT-RTX supports: outputs compared, latency p50/p99)
or reports the documented "engine not run: ... Hopper" on compute capability 9.0 (H100/H200),
in the build and in `trtforge verify` alike."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, run_cli
from tests.e2e.test_hostile_attention import MANIFEST as HOSTILE_MANIFEST
from tests.verify.faults import ATTN_MANIFEST, faults_project

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

MANIFEST = ATTN_MANIFEST


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu")
    faults_project(root, MANIFEST)
    proc = run_cli("build", "engines.toml", cwd=root)
    report = json.loads((root / "engines" / "report.json").read_text())
    return root, proc, report["modules"][0]


def _gpu():
    from trtforge import backends as be

    return be.gpus()[0]


def _needs_rtx():
    from trtforge import backends as be

    if not be.installed("tensorrt-rtx"):  # e.g. a GPU image without it: the build stage fails
        pytest.skip("tensorrt-rtx is not installed here (pip install 'trtforge[rtx]')")


def test_export_and_reference_run_on_cuda(built):
    _, _, module = built
    assert module["stages"]["export"]["state"] == "ok"
    assert module["stages"]["export"]["meta"]["device"].startswith("cuda")


def test_build_passes(built):
    _needs_rtx()
    assert built[1].returncode == 0, built[1].stderr


def test_engine_check_runs_or_says_why_not(built):
    _needs_rtx()
    _, _, module = built
    engine = module["stages"]["verify"]["meta"]["checks"]["engine"]
    gpu = _gpu()
    if gpu.compute_capability == "9.0":
        assert engine["status"] == "not run"
        assert engine["reason"].startswith("engine not run here: ") and "Hopper" in engine["reason"]
        assert module["stages"]["verify"]["meta"]["engine_checked"] is False
    elif gpu.compute_capability in ("8.0", "8.6", "8.9", "12.0"):
        assert engine["status"] == "ok", engine.get("reason")
        assert engine["input_sets"] == 2
        assert 0 < engine["latency"]["p50_ms"] <= engine["latency"]["p99_ms"]
    else:
        assert engine["status"] == "not run"


def test_trtforge_verify_on_the_gpu(built, tmp_path):
    _needs_rtx()
    root, _, _ = built
    dest = tmp_path / "copy"
    shutil.copytree(root / "engines", dest)
    proc = run_cli("verify", str(dest), "--junit", str(tmp_path / "j.xml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if _gpu().compute_capability == "9.0":
        assert "attn: not run: engine not run here: " in proc.stdout and "Hopper" in proc.stdout
        assert run_cli("verify", str(dest), "--require-engine-check", cwd=tmp_path).returncode == 3
    else:
        assert "attn: ok" in proc.stdout


def test_onnxruntime_cuda_check_sees_the_fp16_overflow(tmp_path):
    """With onnxruntime-gpu, the post-precision check runs on ORT's CUDA provider, whose FP16 MatMul and
    Softmax kernels really store FP16: the rule-less hostile attention is NaN there, blamed on the
    precision stage, and not published."""
    from trtforge.verify.onnx_check import cuda_unusable

    why = cuda_unusable()
    if why:
        pytest.skip(why)
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "engines.toml").write_text(HOSTILE_MANIFEST.format(rules="[]"))
    proc = run_cli("build", "engines.toml", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    report = json.loads((tmp_path / "engines" / "report.json").read_text())
    verify = report["modules"][0]["stages"]["verify"]["meta"]
    check = verify["checks"]["precision_rules"]
    assert check["kind"].startswith("onnxruntime CUDA"), check["kind"]
    assert check["status"] == "failed" and "NaN/Inf" in check["reason"]
    assert verify["blame"] == "precision_rules"
    assert not list((tmp_path / "engines").rglob("hostile.engine"))
