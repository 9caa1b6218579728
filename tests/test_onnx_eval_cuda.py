"""The evaluator on ONNX Runtime's CUDA provider (GPU machines with onnxruntime-gpu; skipped
elsewhere, and on CI): FP16 mode is FP16 GPU kernels that store FP16 (an overflowing attention is
NaN, as in the CPU's node-by-node emulation), the widened mode is FP32 (no TF32), runs are
bit-identical across sessions and between a whole-graph session and node by node (restructuring
passes are checked for identity), and the verdicts are the CPU's. Measured on an H200."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import onnx_model
from trtforge.graphs.evaluate import CPU_EP, CUDA_EP, Evaluator, choose_provider

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def cuda(monkeypatch):
    monkeypatch.delenv("TRTFORGE_EVAL_DEVICE", raising=False)
    provider, why = choose_provider()
    if provider != CUDA_EP:
        pytest.skip(why or "no CUDA")


ATTENTION = """
<ir_version: 9, opset_import: ["" : 21]>
g (float16[1, 16, 32] x) => (float16[1, 16, 32] y) {
    kt = Transpose <perm = [0, 2, 1]> (x)
    s = MatMul(x, kt)
    p = Softmax <axis = -1> (s)
    y = MatMul(p, x)
}
"""

CONVNET = """
<ir_version: 9, opset_import: ["" : 21]>
g (float[1, 8, 32, 32] x, float[16, 8, 3, 3] w, float[16] b, float[1024, 64] m) => (float[1, 16, 64] y) {
    c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
    r = Relu(c)
    f = Constant <value_ints = [1, 16, 1024]> ()
    v = Reshape(r, f)
    y = MatMul(v, m)
}
"""


def test_fp16_mode_overflows_on_cuda_as_on_the_cpu_emulation():
    x = np.full((1, 16, 32), 60.0, np.float16)  # scores 32*3600 = 115200 > FP16's 65504
    x[0, :, ::2] = -60.0
    for provider in (CPU_EP, CUDA_EP):
        assert Evaluator(onnx_model(ATTENTION), None, "fp16", provider=provider).small is (provider == CUDA_EP)
        out = Evaluator(onnx_model(ATTENTION), None, "fp16", provider=provider).run({"x": x})["y"]
        assert not np.isfinite(out).all(), provider  # FP16 kernels store FP16: the scores overflow
        node_by_node = Evaluator(onnx_model(ATTENTION), None, "fp16", provider=provider).run({"x": x}, keep="all")
        assert not np.isfinite(node_by_node["y"]).all(), provider
        wide = Evaluator(onnx_model(ATTENTION), None, "fp32", provider=provider).run({"x": x})["y"]
        assert np.isfinite(wide).all(), provider  # widened: the graph's function, finite


def test_fp32_mode_on_cuda_is_fp32_not_tf32():
    rng = np.random.default_rng(0)
    feeds = {
        "x": rng.normal(size=(1, 8, 32, 32)).astype(np.float32),
        "w": rng.normal(size=(16, 8, 3, 3)).astype(np.float32),
        "b": rng.normal(size=16).astype(np.float32),
        "m": rng.normal(size=(1024, 64)).astype(np.float32),
    }
    cpu = Evaluator(onnx_model(CONVNET), None, "fp32", provider=CPU_EP).run(feeds)["y"]
    gpu = Evaluator(onnx_model(CONVNET), None, "fp32", provider=CUDA_EP).run(feeds)["y"]
    scale = np.abs(cpu).max()
    # FP32 kernels agree to ~1e-6 of the output's scale; TF32 (10-bit mantissa) is ~1e-3 off
    assert np.abs(gpu - cpu).max() / scale < 1e-5


def test_cuda_runs_are_bit_identical_across_sessions_and_whole_vs_node_by_node():
    rng = np.random.default_rng(1)
    feeds = {
        "x": rng.normal(size=(1, 8, 32, 32)).astype(np.float32),
        "w": rng.normal(size=(16, 8, 3, 3)).astype(np.float32),
        "b": rng.normal(size=16).astype(np.float32),
        "m": rng.normal(size=(1024, 64)).astype(np.float32),
    }
    whole = Evaluator(onnx_model(CONVNET), None, "fp32", provider=CUDA_EP)
    a = whole.run(feeds)["y"]
    assert whole._whole is not None
    b = Evaluator(onnx_model(CONVNET), None, "fp32", provider=CUDA_EP).run(feeds)["y"]
    c = Evaluator(onnx_model(CONVNET), None, "fp32", provider=CUDA_EP).run(feeds, keep="all")["y"]
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_the_precision_check_runs_on_cuda_with_the_cpu_verdict(tmp_path, monkeypatch):
    from tests.conftest import write_model
    from tests.verify.test_cuda_fallback import MODEL, _sets, _tol
    from trtforge.verify import run as verify_run

    prec = write_model(onnx_model(MODEL), tmp_path / "prec")
    on_cuda = verify_run._precision_check(prec, _sets(), _tol)
    assert on_cuda["kind"] == verify_run.CUDA and on_cuda["status"] == "ok", on_cuda
    monkeypatch.setenv("TRTFORGE_EVAL_DEVICE", "cpu")
    on_cpu = verify_run._precision_check(prec, _sets(), _tol)
    assert on_cpu["kind"].startswith(verify_run.FAITHFUL) and on_cpu["status"] == "ok"
    for name, m in on_cuda["outputs"].items():
        assert abs(m["max_abs"] - on_cpu["outputs"][name]["max_abs"]) <= 1e-3, (m, on_cpu["outputs"][name])
