"""The export stage in-process, on inline nn.Modules: the FP32 reference is computed in FP32 (not
from the FP16 model), the ONNX is natively FP16 with its weights in an external file, inputs and
outputs carry the manifest's names, FP32 islands are found, and binding mistakes are one-line
ExportErrors. Real torch export and real ONNX Runtime; no engine build, no subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from tests.conftest import REPO
from trtforge.data.tensors import load_arrays
from trtforge.errors import ExportError
from trtforge.export import ExportStage
from trtforge.export.binding import bind_inputs, name_outputs
from trtforge.graphs.files import external_locations
from trtforge.manifest import parse_manifest
from trtforge.stage import StageContext

HERE = "tests.export.test_export_stage"


class Squares(nn.Module):
    """(x * 300)^2 / 1e4 on x in [1, 2]: the square reaches 360000, past FP16's 65504, so an
    FP16 forward gives inf where FP32 gives at most 36. A Linear carries real weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(64, 64)

    def forward(self, x):
        t = x * 300.0
        return {"squares": t * t / 1e4, "projected": self.proj(x)}


class Keyed(nn.Module):
    """forward() takes input_ids first; manifests below list attention_mask first."""

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        return {"features": input_ids * 2.0 + attention_mask, "scores": (input_ids - attention_mask).sum(-1)}


class Island(nn.Module):
    """A hard-coded float32 tensor: the Add runs in FP32 inside the FP16 graph."""

    def forward(self, x):
        return (x.float() + torch.ones(8, dtype=torch.float32)).half()


def make_squares():
    return Squares()


def make_keyed():
    return Keyed()


def make_island():
    return Island()


def spec(body: str, tmp_path: Path, name: str = "m"):
    """The module `name` of a manifest written in tmp_path (every default resolved by the loader)."""
    path = tmp_path / "engines.toml"
    path.write_text(body)
    return parse_manifest(body, path).module(name)


def export(module, workdir: Path) -> dict:
    """ExportStage.run as the driver calls it (in-process here): factories import from the repo."""
    workdir.mkdir(parents=True, exist_ok=True)
    return ExportStage().run(StageContext(module=module, root=REPO), workdir)


SQUARES = f"""
[modules.m]
factory = "{HERE}:make_squares"
inputs.x = {{ shape = [2, 64], dtype = "float16", range = [1.0, 2.0] }}
verify.random_inputs = 1
"""


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> tuple[Path, dict]:
    """One real export of Squares, shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("squares")
    out = tmp / "out"
    meta = export(spec(SQUARES, tmp), out)
    return out, meta


def test_reference_is_computed_in_fp32(squares):
    out, _ = squares
    x = load_arrays(out / "inputs.npz")["x"]
    assert x.dtype == np.float16 and x.shape == (2, 64)
    ref = load_arrays(out / "reference.npz")
    assert sorted(ref) == ["projected", "squares"] and ref["squares"].dtype == np.float32
    want = (x.astype(np.float32) * 300.0) ** 2 / 1e4
    np.testing.assert_allclose(ref["squares"], want, rtol=1e-5)
    assert np.isfinite(ref["squares"]).all() and ref["squares"].max() > 9.0
    # the same forward in FP16 overflows: the reference did not come from the FP16 model
    with torch.no_grad():
        fp16 = Squares().half()(torch.from_numpy(x))["squares"]
    assert torch.isinf(fp16).any()
    lin = Squares().proj
    with torch.no_grad():
        np.testing.assert_allclose(
            ref["projected"], lin(torch.from_numpy(x.astype(np.float32))).numpy(), rtol=1e-5, atol=1e-6
        )


def test_random_sets_have_their_own_reference(squares):
    out, meta = squares
    assert meta["input_sets"] == 2
    x1 = load_arrays(out / "inputs.r1.npz")["x"]
    ref1 = load_arrays(out / "reference.r1.npz")["squares"]
    assert not np.array_equal(x1, load_arrays(out / "inputs.npz")["x"])
    assert 1.0 <= x1.min() and x1.max() <= 2.0  # within the declared range
    np.testing.assert_allclose(ref1, (x1.astype(np.float32) * 300.0) ** 2 / 1e4, rtol=1e-5)


def test_onnx_is_fp16_with_external_weights_and_manifest_names(squares):
    out, meta = squares
    proto = onnx.load(str(out / "model.onnx"), load_external_data=False)
    f16 = onnx.TensorProto.FLOAT16
    assert [(i.name, i.type.tensor_type.elem_type) for i in proto.graph.input] == [("x", f16)]
    assert sorted((o.name, o.type.tensor_type.elem_type) for o in proto.graph.output) == [
        ("projected", f16),
        ("squares", f16),
    ]
    locations = external_locations(proto)
    assert locations and all((out / loc).is_file() for loc in locations)
    big = [t for t in proto.graph.initializer if t.dims and np.prod(t.dims) >= 64 * 64]
    assert big and all(t.data_location == onnx.TensorProto.EXTERNAL and t.data_type == f16 for t in big)
    assert meta["opset"] == 20 and meta["fp32_islands"] == []
    assert meta["inputs"] == {"x": {"shape": [2, 64], "dtype": "float16"}}
    assert json.loads((out / "export.json").read_text()) == meta


def test_onnx_runs_in_onnxruntime_close_to_the_reference(squares):
    import onnxruntime as ort

    out, _ = squares
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    x = load_arrays(out / "inputs.npz")["x"]
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))
    ref = load_arrays(out / "reference.npz")
    assert all(a.dtype == np.float16 for a in got.values())
    # FP16 arithmetic, within FP16 rounding of the FP32 reference
    np.testing.assert_allclose(got["projected"].astype(np.float32), ref["projected"], atol=0.02, rtol=0.01)


KEYED = f"""
[modules.by_name]
factory = "{HERE}:make_keyed"
inputs.attention_mask = {{ shape = [2, 8], dtype = "float16", range = [0.0, 1.0] }}
inputs.input_ids = {{ shape = [2, 8], dtype = "float16", range = [-4.0, -2.0] }}

[modules.by_arg]
factory = "{HERE}:make_keyed"
inputs.mask = {{ shape = [2, 8], dtype = "float16", range = [0.0, 1.0], arg = "attention_mask" }}
inputs.ids = {{ shape = [2, 8], dtype = "float16", range = [-4.0, -2.0], arg = "input_ids" }}
outputs = ["scores", "features"]
"""


@pytest.mark.parametrize("name, ids, mask", [("by_name", "input_ids", "attention_mask"), ("by_arg", "ids", "mask")])
def test_binding_by_name_or_arg_in_any_manifest_order(tmp_path, name, ids, mask):
    module = spec(KEYED, tmp_path, name)
    binding = bind_inputs(Keyed(), module)
    # forward()'s order, whatever order the manifest lists them in
    assert binding.positional == () and binding.keyword == (("input_ids", ids), ("attention_mask", mask))
    assert binding.graph_input_names == [ids, mask]
    x, m = torch.full((2, 8), -3.0), torch.full((2, 8), 0.5)
    args, kwargs = binding.call({ids: x, mask: m})
    names, tensors = name_outputs(Keyed()(*args, **kwargs), module)
    assert names == ["features", "scores"]  # the dict's keys, whatever order `outputs` lists them in
    assert torch.equal(tensors[0], x * 2.0 + m) and torch.equal(tensors[1], (x - m).sum(-1))


@pytest.mark.parametrize(
    "body, needles",
    [
        (
            "inputs.attention_mak = { shape = [2, 8] }\ninputs.input_ids = { shape = [2, 8] }",
            [
                "input 'attention_mak' matches no parameter of forward()",
                "its parameters: input_ids, token_type_ids, attention_mask",
            ],
        ),
        (
            'inputs.m = { shape = [2, 8], arg = "mask" }\ninputs.input_ids = { shape = [2, 8] }',
            ["input 'm' (arg 'mask') matches no parameter"],
        ),
        (
            'inputs.a = { shape = [2, 8], arg = "input_ids" }\ninputs.input_ids = { shape = [2, 8] }',
            ["inputs 'a' and 'input_ids' both bind parameter 'input_ids'"],
        ),
        (
            "inputs.attention_mask = { shape = [2, 8] }",
            ["forward() parameter 'input_ids' has no input (inputs: attention_mask)"],
        ),
    ],
)
def test_binding_mistakes_are_export_errors(tmp_path, body, needles):
    module = spec(f'[modules.bad]\nfactory = "{HERE}:make_keyed"\n{body}\n', tmp_path, "bad")
    with pytest.raises(ExportError) as e:
        bind_inputs(Keyed(), module)
    line = e.value.one_line()
    assert "\n" not in line and "module 'bad'" in line and "modules.bad.inputs" in line, line
    for n in needles:
        assert n in line, line


def test_outputs_that_do_not_name_the_returned_keys(tmp_path):
    module = spec(
        f'[modules.bad]\nfactory = "{HERE}:make_keyed"\ninputs.attention_mask = {{ shape = [2, 8] }}\n'
        'inputs.input_ids = { shape = [2, 8] }\noutputs = ["scores", "feature"]\n',
        tmp_path,
        "bad",
    )
    x = torch.zeros(2, 8)
    with pytest.raises(
        ExportError,
        match=r"returns outputs named \['features', 'scores'\] but outputs lists "
        r"\['scores', 'feature'\]",
    ) as e:
        name_outputs(Keyed()(x, attention_mask=x), module)
    assert "modules.bad.outputs" in e.value.one_line()
    plain = spec(
        f'[modules.p]\nfactory = "{HERE}:make_island"\ninputs.x = {{ shape = [8] }}\noutputs = ["a", "b"]\n',
        tmp_path,
        "p",
    )
    with pytest.raises(ExportError, match="returns 1 tensors but outputs names 2"):
        name_outputs(torch.zeros(8), plain)
    assert name_outputs(
        (torch.zeros(1), torch.ones(1)),
        spec(  # unnamed tuples: output_0, output_1
            f'[modules.t]\nfactory = "{HERE}:make_island"\ninputs.x = {{ shape = [8] }}\n', tmp_path, "t"
        ),
    )[0] == ["output_0", "output_1"]


ISLAND = f"""
[modules.m]
factory = "{HERE}:make_island"
inputs.x = {{ shape = [8], dtype = "float16" }}
"""


def test_fp32_island_is_reported_and_forbidden_on_request(tmp_path):
    meta = export(spec(ISLAND, tmp_path), tmp_path / "warn")
    ops = [i["op"] for i in meta["fp32_islands"]]
    assert "Add" in ops, meta["fp32_islands"]
    forbid = spec(ISLAND + "export.forbid_fp32_islands = true\n", tmp_path)
    with pytest.raises(ExportError) as e:
        export(forbid, tmp_path / "forbid")
    line = e.value.one_line()
    assert "FP32 island(s) in the FP16 export" in line and "(Add)" in line and "forbid_fp32_islands" in line
    assert "modules.m.export" in line


def test_factory_mistakes_are_export_errors(tmp_path):
    missing = spec(f'[modules.m]\nfactory = "{HERE}:make_squraes"\ninputs.x = {{ shape = [2, 64] }}\n', tmp_path)
    with pytest.raises(ExportError, match="has no attribute 'make_squraes'") as e:
        export(missing, tmp_path / "missing")
    assert "did you mean 'make_squares'?" in e.value.one_line()
    wrong = spec(f'[modules.m]\nfactory = "{HERE}:make_squares"\ninputs.x = {{ shape = [2, 5] }}\n', tmp_path)
    with pytest.raises(ExportError, match=r"forward failed on the example inputs \(x\[2, 5\]:float16\)"):
        export(wrong, tmp_path / "wrong")
