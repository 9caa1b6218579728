"""Which device the evaluator runs on (onnx_eval.choose_provider, the one place that decides). On a
CPU-only machine (this one, CI) the real CPU-only onnxruntime: nothing changes, every session is a
CPU session with the options it always had. The CUDA side runs for real in
tests/test_onnx_eval_cuda.py (GPU machines); here `fake_gpu` and a provider list naming CUDA are
test doubles for the GPU and the onnxruntime-gpu wheel, which cannot exist on this machine."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.conftest import onnx_model
from trtforge import backends as be
from trtforge.errors import VerifySetupError
from trtforge.graphs import evaluate as onnx_eval
from trtforge.graphs.evaluate import CPU_EP, CUDA_EP, Evaluator, choose_provider

MODEL = """
<ir_version: 9, opset_import: ["" : 21]>
g (float16[2, 8] x, float16[8, 8] w) => (float16[2, 8] y) {
    m = MatMul(x, w)
    s = Softmax <axis = 1> (m)
    y = Mul(s, x)
}
"""

cpu_only = pytest.mark.skipif(
    CUDA_EP in ort.get_available_providers(), reason="onnxruntime-gpu is installed: the CPU-only case is not this one"
)


def _feeds():
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(2, 8)).astype(np.float16), "w": rng.normal(size=(8, 8)).astype(np.float16)}


@pytest.fixture
def fake_gpu(monkeypatch):
    """Test double: a GPU and an onnxruntime that lists the CUDA provider (the real one is CPU-only)."""
    monkeypatch.setattr(be, "gpus", lambda: [be.Gpu("NVIDIA RTX 4090", "8.9")])
    listed = [CUDA_EP, *ort.get_available_providers()]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)


@cpu_only
def test_cpu_only_machine_runs_every_session_on_the_cpu_as_before(monkeypatch):
    monkeypatch.delenv(onnx_eval.DEVICE_ENV, raising=False)
    provider, why = choose_provider()
    assert provider == CPU_EP and why is not None and "no CUDA provider" in why
    for mode in ("fp16", "fp32"):
        ev = Evaluator(onnx_model(MODEL), None, mode)
        assert ev.provider == CPU_EP
        out = ev.run(_feeds(), keep="all")  # node by node: one session per node
        assert out["y"].dtype == (np.float16 if mode == "fp16" else np.float32)
        sessions = list(ev._sessions.values())
        assert len(sessions) == 3
        for sess in sessions:  # the CPU sessions of before: CPU only, one thread for a small node
            assert sess.get_providers() == [CPU_EP]
            assert sess.get_session_options().intra_op_num_threads == 1
            assert sess.get_session_options().enable_cpu_mem_arena is False
        # and the result is the explicit CPU evaluator's, bit for bit
        again = Evaluator(onnx_model(MODEL), None, mode, provider=CPU_EP).run(_feeds())
        assert np.array_equal(again["y"], out["y"])
    # fp16 never runs whole on the CPU (its whole-graph session would hide FP16 overflow)
    ev = Evaluator(onnx_model(MODEL), None, "fp16")
    ev.run(_feeds())
    assert ev._whole is None and len(ev._sessions) == 3


def test_cpu_forced_by_the_environment_probes_nothing(monkeypatch, fake_gpu):
    monkeypatch.setenv(onnx_eval.DEVICE_ENV, "cpu")

    def no_probe():
        raise AssertionError("the CUDA provider was probed")

    monkeypatch.setattr(onnx_eval, "_cuda_loads", no_probe)
    assert choose_provider() == (CPU_EP, f"{onnx_eval.DEVICE_ENV}=cpu")
    assert Evaluator(onnx_model(MODEL), None, "fp32").provider == CPU_EP


def test_unknown_device_in_the_environment_is_a_user_error(monkeypatch):
    monkeypatch.setenv(onnx_eval.DEVICE_ENV, "tpu")
    with pytest.raises(VerifySetupError) as e:
        choose_provider()
    assert onnx_eval.DEVICE_ENV in str(e.value) and "'cpu' or 'auto'" in e.value.hint


@cpu_only
def test_a_listed_cuda_provider_that_does_not_load_leaves_the_cpu(monkeypatch, fake_gpu):
    """The probe session is real: on CPU-only onnxruntime it runs on the CPU, so the CPU is chosen
    and the reason names what ran."""
    monkeypatch.delenv(onnx_eval.DEVICE_ENV, raising=False)
    provider, why = choose_provider()
    assert provider == CPU_EP
    assert why == f"ONNX Runtime provider {CUDA_EP} requested but ['CPUExecutionProvider'] is running"
    ev = Evaluator(onnx_model(MODEL), None, "fp16")
    assert ev.provider == CPU_EP and ev.small is False


def test_provider_is_part_of_the_session_key(monkeypatch):
    """Evaluators share session caches (a pass's before and after): a CPU session is never reused
    for a CUDA evaluator or the reverse."""
    ev = Evaluator(onnx_model(MODEL), None, "fp16", provider=CPU_EP)
    ev.run(_feeds())
    assert {k[1] for k in ev._sessions} == {CPU_EP}
    with pytest.raises(ValueError):
        Evaluator(onnx_model(MODEL), None, "fp16", provider="TensorrtExecutionProvider")


def test_the_cuda_probe_is_a_model_every_supported_onnxruntime_reads():
    """The probe states its IR version and opset: onnx's defaults can be newer than the onnxruntime
    beside it (the device machine: onnx 1.23.1 wrote IR 14, onnxruntime-gpu 1.31 reads up to 13, so
    the probe failed and every evaluation stayed on the CPU with a GPU present)."""
    probe = onnx.load_from_string(onnx_eval._probe_model())
    assert probe.ir_version == onnx_eval.PROBE_IR <= 9  # onnxruntime 1.18 (pyproject's floor) reads IR 10
    assert [(o.domain, o.version) for o in probe.opset_import] == [("", onnx_eval.PROBE_OPSET)]
    assert onnx_eval.PROBE_OPSET <= 21
    sess = ort.InferenceSession(onnx_eval._probe_model(), providers=[CPU_EP])
    x = np.array([1.5], np.float32)
    assert np.array_equal(sess.run(None, {"x": x})[0], x)
