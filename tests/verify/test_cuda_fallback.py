"""Which FP16-faithful kernel judges the precision stage. The CUDA provider itself runs only in
tests/verify/test_gpu.py (on a GPU with onnxruntime-gpu, measured on an H200). Here, with the real
CPU-only onnxruntime, a provider that is listed but does not load is the case that can be shown:
test doubles (`fake_gpu`, a provider list naming CUDA) stand in for the GPU and the onnxruntime-gpu
wheel, which cannot exist on this machine; the session that falls back to the CPU is real."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import onnx_model, write_model
from trtforge import backends as be
from trtforge.verify import onnx_check
from trtforge.verify import run as verify_run

MODEL = """
<ir_version: 9, opset_import: ["" : 21]>
g (float16[2, 4] x) => (float16[2, 4] y) {
    s = Softmax <axis = 1> (x)
    y = Mul(s, x)
}
"""


@pytest.fixture
def prec(tmp_path):
    return write_model(onnx_model(MODEL), tmp_path / "prec")


def _sets():
    x = np.linspace(-2, 2, 8, dtype=np.float16).reshape(2, 4)
    xf = x.astype(np.float32)
    e = np.exp(xf - xf.max(axis=1, keepdims=True))
    return [("example", {"x": x}, {"y": e / e.sum(axis=1, keepdims=True) * xf})]


def _tol(name):
    return {"atol": 1e-2, "rtol": 1e-2, "max_outside": 0.0, "min_cosine": 0.99}


def test_no_gpu_means_the_cpu_evaluator_without_a_note(prec, monkeypatch):
    monkeypatch.setattr(be, "gpus", lambda: [])  # as on CI, also where a GPU is present
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])  # CPU-only onnxruntime
    check = verify_run._precision_check(prec, _sets(), _tol)
    assert check["status"] == "ok", check
    assert check["kind"] == verify_run.FAITHFUL


@pytest.mark.skipif(
    onnx_check.CUDA_EP in ort.get_available_providers(),
    reason="onnxruntime-gpu is installed: its CUDA provider may really load here",
)
def test_cuda_listed_but_not_loading_falls_back_and_says_why(prec, monkeypatch):
    monkeypatch.setattr(be, "gpus", lambda: [be.Gpu("NVIDIA RTX 4090", "8.9")])  # fake_gpu
    listed = [onnx_check.CUDA_EP, *ort.get_available_providers()]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    assert onnx_check.cuda_unusable() is None  # it looks usable...
    check = verify_run._precision_check(prec, _sets(), _tol)
    # ...but the real session runs on the CPU only: the node-by-node evaluator judges, and says so
    assert check["status"] == "ok", check
    assert check["kind"].startswith(
        verify_run.FAITHFUL + " (CUDA provider not used: ONNX Runtime provider CUDAExecutionProvider requested but"
    )


def test_provider_missing_is_named(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert "no CUDA provider" in onnx_check.cuda_unusable()
