"""The data-driven precision paths (auto, activation_range, `debug precision`) read every weight
relative to the model's folder, whatever its dtype: at dc06a34 a non-FP16 initializer in external
data (DiT's FP32 timestep constant, DeBERTa's INT64 indices) reached ONNX Runtime as an external
reference and crashed it ("External data path validation failed ... escapes working directory")."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtforge.graphs import evaluate as onnx_eval
from trtforge.graphs.files import load_graph_proto
from trtforge.precision_rules.fp32_probe import Probe, tensors_fp32
from trtforge.verify.onnx_check import run_fp16_faithful

N = 512  # every initializer above onnx's 1 KiB external-data threshold


def _model() -> onnx.ModelProto:
    """y = x + Cast(w32) ; z = Gather(y, idx64) with an FP32 and an INT64 weight, both external."""
    w32 = numpy_helper.from_array(np.linspace(-2, 2, N).astype(np.float32), "w32")
    idx = numpy_helper.from_array(np.arange(N - 1, -1, -1, dtype=np.int64), "idx")
    nodes = [
        helper.make_node("Cast", ["w32"], ["w16"], to=TensorProto.FLOAT16),
        helper.make_node("Add", ["x", "w16"], ["y"]),
        helper.make_node("Gather", ["y", "idx"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [N])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT16, [N])],
        [w32, idx],
    )
    # IR 8: onnx >= 1.23 writes IR 14 by default, which onnxruntime(-gpu) 1.31 refuses
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("whole", [True, False], ids=["whole-graph session", "node by node"])
def test_non_fp16_external_weights_are_read_from_the_model_folder(tmp_path, monkeypatch, whole):
    folder = tmp_path / "stage"
    folder.mkdir()
    onnx.save_model(
        _model(),
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.data",
        size_threshold=0,
    )
    model = load_graph_proto(folder)
    assert all(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the weights are not relative to the working directory
    if not whole:
        monkeypatch.setattr(onnx_eval, "WHOLE_GRAPH_BYTES", -1)
    x = np.ones(N, np.float16)
    expected = (1.0 + np.linspace(-2, 2, N))[::-1]
    probe = Probe(model, folder, {"x": x})
    assert probe.peaks(0, 0)["z"] == pytest.approx(3.0, rel=1e-3)
    assert probe.score_peaks(0, 0)["z"] == pytest.approx(3.0, rel=1e-3)
    assert np.allclose(tensors_fp32(model, folder, {"x": x})["z"], expected, atol=1e-3)
    assert np.allclose(run_fp16_faithful(folder, {"x": x})["z"], expected, atol=2e-3)
