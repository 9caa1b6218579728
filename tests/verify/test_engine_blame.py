"""The engine's kernels take the blame when every ONNX check passes and the engine's outputs do
not. No GPU here, so the engine runner is a test double (`fake_runner`): it returns what a broken
kernel or a refusing runtime would, through the same verify chain a GPU run takes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ONNX_STAGES
from tests.verify.faults import ATTN_MANIFEST, faults_project
from trtforge import backends as be
from trtforge.cache import Store
from trtforge.driver.lifecycle import build_module
from trtforge.manifest import load_manifest
from trtforge.verify import run as verify_run

pytestmark = pytest.mark.slow  # real engine builds, in-process

MANIFEST = ATTN_MANIFEST


def fake_runner(monkeypatch, outputs_for, gpu_name):
    """Pretend a supported GPU is present and the engine ran: `outputs_for(feeds)`. Each test names
    its own GPU: the GPUs are in the verify key, so only verify reruns (the rest is cached)."""
    monkeypatch.setattr(be, "gpus", lambda: [be.Gpu(gpu_name, "8.9")])
    monkeypatch.setattr(verify_run, "why_not_runnable", lambda meta: None)

    def run_engine_sets(engine_path, feed_sets, backend, runs=50):
        assert Path(engine_path).is_file()
        return [outputs_for(feeds) for feeds in feed_sets], {"p50_ms": 0.1, "p99_ms": 0.2}

    monkeypatch.setattr(verify_run, "run_engine_sets", run_engine_sets)


@pytest.fixture(scope="module")
def project(attn_built, tmp_path_factory):
    """ATTN_MANIFEST with a copy of the shared attention build's cache: export to build are cache
    hits (the same module but for its verify settings), verify runs in every test."""
    tmp_path = tmp_path_factory.mktemp("engine_blame")
    faults_project(tmp_path, MANIFEST)
    shutil.copytree(attn_built / ".trtforge-cache", tmp_path / "cache", symlinks=True)
    manifest = load_manifest(tmp_path / "engines.toml")
    return manifest, Store(tmp_path / "cache")


def test_wrong_engine_outputs_are_blamed_on_the_engine(project, monkeypatch):
    manifest, store = project
    refs = {}
    # the double answers each set with its reference scaled by 1.5 (a broken kernel)
    fake_runner(monkeypatch, lambda feeds: {k: v * 1.5 for k, v in refs[id(feeds)].items()}, "double 1")
    monkeypatch.setattr(verify_run, "input_sets", _capture(refs))
    result = build_module(store, manifest, manifest.modules[0])
    meta = result.records["verify"].meta
    assert meta["blame"] == "engine" and not meta["passed"]
    assert [meta["checks"][s]["status"] for s in ONNX_STAGES] == ["ok"] * 3
    assert meta["checks"]["engine"]["outputs"]["y"]["sets"] == 2
    assert meta["checks"]["engine"]["latency"] == {"p50_ms": 0.1, "p99_ms": 0.2}
    assert "verification failed at stage 'engine'" in result.error.one_line()


def test_a_runtime_that_refuses_the_engine_fails_the_engine_check(project, monkeypatch):
    manifest, store = project

    def refuse(feeds):
        raise RuntimeError("IRuntime::deserializeCudaEngine: version mismatch")

    fake_runner(monkeypatch, refuse, "double 2")
    result = build_module(store, manifest, manifest.modules[0])
    engine = result.records["verify"].meta["checks"]["engine"]
    assert engine["status"] == "failed" and "version mismatch" in engine["reason"]
    assert result.records["verify"].meta["blame"] == "engine"


def test_matching_engine_outputs_pass(project, monkeypatch):
    manifest, store = project
    refs = {}
    fake_runner(monkeypatch, lambda feeds: {k: v.astype(np.float16) for k, v in refs[id(feeds)].items()}, "double 3")
    monkeypatch.setattr(verify_run, "input_sets", _capture(refs))
    result = build_module(store, manifest, manifest.modules[0])
    meta = result.records["verify"].meta
    assert meta["passed"] and meta["engine_checked"] and result.ok


def _capture(refs):
    """input_sets as the verify chain calls it, remembering each set's reference by its feeds."""
    from trtforge.data.tensors import input_sets

    def wrapped(folder, inputs, reference):
        sets = input_sets(folder, inputs, reference)
        refs.update({id(feeds): ref for _, feeds, ref in sets})
        return sets

    return wrapped
