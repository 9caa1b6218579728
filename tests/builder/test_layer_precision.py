"""The layer-precision realiser for weakly typed TensorRT 10 and the post-build precision check.

TensorRT 10 cannot be installed here, so `apply_layer_precisions` runs against a test double of
its network API (FakeTrtNetwork). That the planned names are the names the real parser gives the
layers is proven with the TensorRT-RTX parser on the example ViT."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trtforge.builder.engine import apply_layer_precisions, check_precisions
from trtforge.errors import BuildError

FAKE_TRT = SimpleNamespace(float32="float32", float16="float16", int64="int64")


class FakeTrtTensor:
    def __init__(self, dtype):
        self.dtype = dtype


class FakeTrtLayer:
    """Test double of tensorrt.ILayer: records precision and output types set on it."""

    def __init__(self, name, dtypes):
        self.name, self.precision, self.output_types = name, None, {}
        self._outs = [FakeTrtTensor(d) for d in dtypes]
        self.num_outputs = len(self._outs)

    def get_output(self, j):
        return self._outs[j]

    def set_output_type(self, j, dtype):
        self.output_types[j] = dtype


class FakeTrtNetwork:
    """Test double of tensorrt.INetworkDefinition (num_layers, get_layer)."""

    def __init__(self, layers):
        self._layers = layers
        self.num_layers = len(layers)

    def get_layer(self, i):
        return self._layers[i]


def _network():
    return FakeTrtNetwork(
        [
            FakeTrtLayer("node_matmul", ["float16"]),
            FakeTrtLayer("node_softmax", ["float16"]),
            FakeTrtLayer("node_shape", ["int64"]),
            FakeTrtLayer("node_matmul_1", ["float16"]),
        ]
    )


def test_planned_layers_get_fp32_precision_and_float_outputs():
    net = _network()
    apply_layer_precisions(net, FAKE_TRT, {"node_matmul": {}, "node_softmax": {}, "node_shape": {}}, "vit")
    layers = {net.get_layer(i).name: net.get_layer(i) for i in range(net.num_layers)}
    assert layers["node_matmul"].precision == "float32" and layers["node_matmul"].output_types == {0: "float32"}
    assert layers["node_softmax"].output_types == {0: "float32"}
    assert layers["node_shape"].output_types == {}  # integer outputs keep their type
    assert layers["node_matmul_1"].precision is None and layers["node_matmul_1"].output_types == {}


def test_a_planned_layer_missing_from_the_network_is_an_error():
    with pytest.raises(BuildError, match="node_gone"):
        apply_layer_precisions(_network(), FAKE_TRT, {"node_matmul": {}, "node_gone": {}}, "vit")


LAYERS = [
    {"name": "node_matmul", "type": "MATRIX_MULTIPLY", "outputs": ["FLOAT"]},
    {"name": "node_softmax", "type": "SOFTMAX", "outputs": ["FLOAT"]},
    {"name": "node_matmul_1", "type": "MATRIX_MULTIPLY", "outputs": ["HALF"]},
]
PLAN = {"node_matmul": {"op": "MatMul"}, "node_softmax": {"op": "Softmax"}}


def test_check_precisions_counts_and_rejects_mismatches():
    assert check_precisions(LAYERS, PLAN, "vit") == {"FLOAT": 2, "HALF": 1}
    with pytest.raises(BuildError, match="node_matmul_1 .* is FLOAT, planned HALF"):
        check_precisions([*LAYERS[:2], {**LAYERS[2], "outputs": ["FLOAT"]}], PLAN, "vit")
    with pytest.raises(BuildError, match="not honoured"):
        check_precisions([{**LAYERS[0], "outputs": ["HALF"]}, *LAYERS[1:]], PLAN, "vit")
    with pytest.raises(BuildError, match="no layer of that name"):
        check_precisions(LAYERS[1:], PLAN, "vit")


SMALL_VIT = """
[modules.vit]
factory = "examples.vit:make_vit"
factory_args = { depth = 2, dim = 32, heads = 2, patch = 16 }
inputs.image = { shape = [1, 3, 64, 64], dtype = "float16" }
outputs = ["logits", "tokens"]
precision.rules = [{ rule = "attention_score", mode = "all" }]
"""


def test_planned_names_are_the_tensorrt_rtx_parser_layer_names(example_project):
    """The example ViT (2 blocks, to keep it small) as weakly typed TensorRT 10 would parse it:
    the post-pass ONNX, no Casts. The stages run up to precision_rules only: no engine is built."""
    from trtforge import backends as be
    from trtforge.cache import Store
    from trtforge.driver.lifecycle import records_until
    from trtforge.manifest import load_manifest

    (example_project / "engines.toml").write_text(SMALL_VIT)
    manifest = load_manifest(example_project / "engines.toml")
    store = Store(example_project / ".trtforge-cache")
    with store.gc_lock(exclusive=False):
        records = records_until(store, manifest, manifest.module("vit"), "precision_rules")
        plan = records["precision_rules"].meta["fp32"]
        passes_onnx = store.view(records["graph_passes"]) / "model.onnx"

        be.select(be.RTX)
        from polygraphy.backend import trt as ptrt

        _, network, _ = ptrt.network_from_onnx_path(str(passes_onnx), strongly_typed=True)
    names = {network.get_layer(i).name for i in range(network.num_layers)}
    assert len(plan) == 2 * 3 and set(plan) <= names  # per block: score MatMul, scale, Softmax
