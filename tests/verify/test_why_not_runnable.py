"""Whether an engine can run on this machine's GPU, with the GPU list faked: no GPU exists here,
so `FakeGpus` (a named test double) stands in for nvidia-smi's answer."""

from __future__ import annotations

import pytest

from trtforge import backends as be
from trtforge.verify.engine_check import why_not_runnable

RTX_META = {
    "backend": be.RTX,
    "target": {"name": "rtx-sm80-sm86-sm89-sm120", "compute_capabilities": ["8.0", "8.6", "8.9", "12.0"]},
}


class FakeGpus:
    """Test double for `backend.gpus()`: a fixed list of GPUs."""

    def __init__(self, *gpus: tuple[str, str]):
        self.gpus = [be.Gpu(name, cc) for name, cc in gpus]

    def __call__(self):
        return self.gpus


@pytest.fixture
def fake(monkeypatch):
    def install(*gpus):
        monkeypatch.setattr(be, "gpus", FakeGpus(*gpus))

    return install


def test_no_gpu(fake):
    fake()
    assert why_not_runnable(RTX_META) == "no NVIDIA GPU on this machine"


def test_rtx_engine_on_hopper_is_refused(fake):
    fake(("NVIDIA H100 80GB HBM3", "9.0"))
    reason = why_not_runnable(RTX_META)
    assert "sm90" in reason and "TensorRT-RTX does not run on Hopper" in reason
    assert "NVIDIA H100 80GB HBM3" in reason


def test_rtx_engine_on_ada_runs(fake, monkeypatch):
    fake(("NVIDIA L4", "8.9"))
    monkeypatch.setattr(be, "installed", lambda backend: True)  # also where tensorrt-rtx is absent
    assert why_not_runnable(RTX_META) is None


def test_trt_engine_on_another_gpu_model(fake, monkeypatch):
    fake(("NVIDIA A100-SXM4-80GB", "8.0"))
    monkeypatch.setattr(be, "installed", lambda backend: True)
    meta = {
        "backend": be.TRT,
        "target": {"name": "trt-nvidia-a10-sm86", "gpu": "NVIDIA A10", "compute_capabilities": ["8.0"]},
    }
    assert why_not_runnable(meta) == "engine built for NVIDIA A10, this GPU is NVIDIA A100-SXM4-80GB"


def test_backend_not_installed_names_the_extra(fake, monkeypatch):
    fake(("NVIDIA L4", "8.9"))
    monkeypatch.setattr(be, "installed", lambda backend: False)
    assert "pip install 'trtforge[rtx]'" in why_not_runnable(RTX_META)
