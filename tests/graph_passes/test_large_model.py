"""The large-model path at a size CI affords (~50 MB of external FP16 weights, bench/large_model.py's
generator): the default passes read no weight, keep the weight file by hard link, write a small
protobuf, and ONNX Runtime gives the same outputs (pipeline meaning check on)."""

from __future__ import annotations

import importlib.util
from collections import Counter

import numpy as np

from tests.conftest import REPO
from trtforge.graph_passes.run import run_pipeline
from trtforge.graphs import evaluate as onnx_eval
from trtforge.graphs import files as onnx_files
from trtforge.manifest import DEFAULT_PASSES

spec = importlib.util.spec_from_file_location("large_model", REPO / "bench" / "large_model.py")
large_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(large_model)


def test_default_passes_on_external_weights(tmp_path, monkeypatch):
    src = large_model.generate(tmp_path / "src", layers=48, width=724)  # 48 x 1 MiB
    weights = src / "weights.bin"
    assert weights.stat().st_size > 48 * 2**20
    reads, checked = [], []
    original = onnx_files.read_tensor
    # the passes' reads go through onnx_files, the meaning check's through onnx_eval (streamed)
    monkeypatch.setattr(onnx_files, "read_tensor", lambda t, d: reads.append(t.name) or original(t, d))
    monkeypatch.setattr(onnx_eval, "read_tensor", lambda t, d: checked.append(t.name) or original(t, d))
    out = tmp_path / "out"
    out.mkdir()
    x = np.random.default_rng(0).uniform(-1, 1, (3, 16, 724)).astype(np.float16)
    meta = run_pipeline(src, out, DEFAULT_PASSES, check="pipeline", recorded=[{"x": x}])
    assert reads == []  # no pass read a weight
    weights_read = Counter(n for n in checked if n.startswith("W"))
    assert len(weights_read) == 48 and set(weights_read.values()) == {2}  # once per evaluation
    assert (out / "weights.bin").stat().st_ino == weights.stat().st_ino
    assert (out / "model.onnx").stat().st_size < 2**20
    assert not (out / "passes.data").exists() or (out / "passes.data").stat().st_size < 2**16
    by_name = {p["name"]: p for p in meta["passes"]}
    assert by_name["fold_static_shapes"]["modified"] and by_name["remove_identities"]["modified"]
    assert by_name["remove_identities"]["check"].startswith("pipeline: within tolerance")
    assert meta["nodes_after"] < meta["nodes_before"] - 2 * 48
