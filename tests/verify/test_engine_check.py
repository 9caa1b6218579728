"""Why an engine cannot run here, in the words the report uses. The GPUs are a test double
(`fake_gpus`): the real H100 or RTX card cannot exist on a CPU machine."""

from __future__ import annotations

import pytest

from trtforge import backends as be
from trtforge.verify.engine_check import why_not_runnable

RTX_META = {
    "backend": be.RTX,
    "target": {"name": "rtx-sm80-sm86-sm89-sm120", "compute_capabilities": ["8.0", "8.6", "8.9", "12.0"]},
}


def fake_gpus(monkeypatch, *gpus):
    monkeypatch.setattr(be, "gpus", lambda: list(gpus))


def test_no_gpu(monkeypatch):
    fake_gpus(monkeypatch)
    assert why_not_runnable(RTX_META) == "no NVIDIA GPU on this machine"


def test_hopper_is_named_even_without_the_runtime_installed(monkeypatch):
    fake_gpus(monkeypatch, be.Gpu("NVIDIA H100 80GB HBM3", "9.0"))
    monkeypatch.setattr(be, "installed", lambda backend: False)
    reason = why_not_runnable(RTX_META)
    assert "this GPU (NVIDIA H100 80GB HBM3, sm90) is not among them" in reason
    assert reason.endswith("(TensorRT-RTX does not run on Hopper)")


@pytest.mark.parametrize("installed,expected", [(False, "tensorrt-rtx is not installed here"), (True, None)])
def test_supported_gpu(monkeypatch, installed, expected):
    fake_gpus(monkeypatch, be.Gpu("NVIDIA RTX 4090", "8.9"))
    monkeypatch.setattr(be, "installed", lambda backend: installed)
    reason = why_not_runnable(RTX_META)
    assert reason == expected if expected is None else reason.startswith(expected)
