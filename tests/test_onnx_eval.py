"""The streaming evaluator (trtforge/graphs/evaluate.py) on small ONNX-text graphs: it frees what no later
node reads, it is FP16-faithful or widened as asked, it reuses one session per distinct node, and
it runs graphs whose nodes are out of order."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.conftest import onnx_model, write_model
from trtforge.graphs import evaluate as onnx_eval
from trtforge.graphs.cycles import GraphCycleError
from trtforge.graphs.evaluate import Evaluator, evaluate


@pytest.fixture
def streamed(monkeypatch):
    """fp32 mode streams node by node even for these small graphs (else: one whole-graph session)."""
    monkeypatch.setattr(onnx_eval, "WHOLE_GRAPH_BYTES", -1)


def _chain(n: int, size: int) -> onnx.ModelProto:
    """y = x + w0 + w1 + ... with n FP32 weights of `size` elements each, as initializers."""
    nodes, inits = [], []
    prev = "x"
    for i in range(n):
        inits.append(onnx.numpy_helper.from_array(np.full(size, i, np.float32), f"w{i}"))
        out = "y" if i == n - 1 else f"t{i}"
        nodes.append(onnx.helper.make_node("Add", [prev, f"w{i}"], [out], name=f"add{i}"))
        prev = out
    graph = onnx.helper.make_graph(
        nodes,
        "chain",
        [onnx.helper.make_tensor_value_info("x", 1, [size])],
        [onnx.helper.make_tensor_value_info("y", 1, [size])],
        inits,
    )
    # IR 8: onnx >= 1.23 writes IR 14 by default, which onnxruntime(-gpu) 1.31 refuses
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)


def test_weights_and_activations_are_freed_after_their_last_use(tmp_path, streamed):
    size, n = 1 << 18, 12  # 1 MiB per tensor, 12 weights
    model = _chain(n, size)
    onnx.save_model(
        model,
        str(tmp_path / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    from trtforge.graphs.files import load_graph_proto

    ev = Evaluator(load_graph_proto(tmp_path), tmp_path, "fp32")
    x = np.ones(size, np.float32)
    y = ev.run({"x": x})["y"]
    assert np.array_equal(y, x + sum(range(n)))
    # input + one weight + one or two activations live at a time, never all 12 weights
    assert ev.peak_bytes <= 4 * size * 4, ev.peak_bytes
    kept = ev.run({"x": x}, keep="all")
    assert len([k for k in kept if k.startswith("w")]) == n  # keep="all" really keeps everything


OVERFLOW = """
<ir_version: 8, opset_import: ["" : 17]>
g (float16[2, 2] x) => (float16[2, 2] y) {
    y = MatMul(x, x)
}
"""


def test_fp16_mode_overflows_like_a_gpu_and_fp32_mode_does_not(tmp_path):
    folder = write_model(onnx_model(OVERFLOW), tmp_path / "m")
    x = np.full((2, 2), 200.0, np.float16)  # 2 * 200 * 200 = 80000 > 65504
    assert np.isinf(evaluate(folder, {"x": x}, mode="fp16")["y"]).all()
    wide = evaluate(folder, {"x": x}, mode="fp32")["y"]
    assert wide.dtype == np.float32 and np.allclose(wide, 80000.0)


def test_one_session_per_distinct_node(streamed):
    model = _chain(6, 16)
    ev = Evaluator(model, None, "fp32")
    ev.run({"x": np.zeros(16, np.float32)})
    assert len(ev._sessions) == 1  # six Adds of the same shapes and types


def test_nodes_out_of_order_are_sorted_and_cycles_named(streamed):
    model = _chain(3, 4)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    assert np.array_equal(
        Evaluator(model, None, "fp32").run({"x": np.zeros(4, np.float32)})["y"], np.full(4, 3.0, np.float32)
    )
    cyc = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Relu", ["b"], ["a"], name="r1"),
            onnx.helper.make_node("Relu", ["a"], ["b"], name="r2"),
        ],
        "cyc",
        [],
        [onnx.helper.make_tensor_value_info("a", 1, [1])],
    )
    with pytest.raises(GraphCycleError, match="cycle through node 'r"):  # a user error: exit 2
        Evaluator(onnx.helper.make_model(cyc, ir_version=8), None, "fp32")


def test_small_graphs_run_whole_with_the_same_bits(tmp_path, monkeypatch):
    model = _chain(5, 64)
    model.graph.initializer[2].CopyFrom(
        onnx.numpy_helper.from_array(np.full(64, 0.1, np.float16).astype(np.float32), "w2")
    )
    x = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    whole = Evaluator(model, None, "fp32")
    out = whole.run({"x": x})["y"]
    assert whole._whole is not None and not whole._sessions
    monkeypatch.setattr(onnx_eval, "WHOLE_GRAPH_BYTES", -1)
    streamed = Evaluator(model, None, "fp32")
    assert np.array_equal(streamed.run({"x": x})["y"], out) and streamed._whole is None


def test_small_node_sessions_run_on_one_thread_large_ones_keep_the_pool():
    """A node session with its own thread pool joins its threads when dropped (24 ms each on 2
    cores: most of a tiny model's verify stage); small nodes get one thread, large ones (a UNet's
    convolutions) keep ONNX Runtime's default, and whole graphs too."""
    import onnxruntime as ort

    from trtforge.graphs.evaluate import ONE_THREAD_BELOW, session_options

    assert session_options(ort, 64).intra_op_num_threads == 1
    assert session_options(ort, ONE_THREAD_BELOW).intra_op_num_threads == 0
    assert session_options(ort).intra_op_num_threads == 0


def test_node_sessions_do_not_spin():
    """The evaluator keeps many node sessions, each with its own thread pool: an idle pool that spins
    after its run takes a core from the node running now (SD1.5 precision graph on 2 cores: 41.1 s
    spinning, 20.0 s not). Every session the evaluator and verify's CUDA check open sleeps instead."""
    import onnxruntime as ort

    from trtforge.graphs.evaluate import session_options

    for opts in (session_options(ort, 64), session_options(ort, 1 << 24), session_options(ort)):
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
