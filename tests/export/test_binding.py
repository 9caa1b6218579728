"""Inputs bind to forward()'s parameters by name, in any manifest order (or through `arg`); a
dict's outputs are named by its keys. Both were positional: the engine input called
`attention_mask` was really `input_ids`, and `outputs` named a dict's tensors in the dict's order.
Everything runs through the console script: real export, real build, real verify."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.errors.conftest import one_error_line

pytestmark = pytest.mark.slow  # real exports and engine builds

MODELS = '''
import torch
from torch import nn


class Keyed(nn.Module):
    """forward() takes input_ids first; the manifest lists attention_mask first."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        return {"features": input_ids * self.scale + attention_mask,
                "scores": (input_ids - attention_mask).sum(-1)}


def make_keyed():
    return Keyed()
'''

# the two inputs have disjoint ranges, so a swapped binding cannot pass for the right one
GOOD = """
[defaults]
precision.rules = []

[modules.by_name]
factory = "keyed:make_keyed"
inputs.attention_mask = { shape = [2, 8], dtype = "float16", range = [0.0, 1.0] }
inputs.input_ids = { shape = [2, 8], dtype = "float16", range = [-4.0, -2.0] }

[modules.by_arg]
factory = "keyed:make_keyed"
inputs.mask = { shape = [2, 8], dtype = "float16", range = [0.0, 1.0], arg = "attention_mask" }
inputs.ids = { shape = [2, 8], dtype = "float16", range = [-4.0, -2.0], arg = "input_ids" }
outputs = ["scores", "features"]
"""


def _write(root, manifest: str):
    (root / "keyed.py").write_text(MODELS)
    (root / "engines.toml").write_text(manifest)


def _bundle(root, module: str) -> tuple[dict, dict]:
    (folder,) = [p for p in (root / "engines").iterdir() if p.is_dir()]
    with np.load(folder / f"{module}.inputs.npz") as i, np.load(folder / f"{module}.reference.npz") as r:
        return dict(i), dict(r)


def test_inputs_bind_by_name_and_dict_outputs_by_key(tmp_path):
    _write(tmp_path, GOOD)
    r = run_cli("build", "--json", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = {m["name"]: m for m in json.loads(r.stdout)["modules"]}
    for module, ids, mask in (("by_name", "input_ids", "attention_mask"), ("by_arg", "ids", "mask")):
        inputs, ref = _bundle(tmp_path, module)
        assert sorted(ref) == ["features", "scores"], ref.keys()  # the dict's keys, not output_0/1
        x, m = inputs[ids].astype(np.float32), inputs[mask].astype(np.float32)
        assert x.max() <= -2.0 and m.min() >= 0.0  # each input holds its own range
        np.testing.assert_allclose(ref["features"], 2.0 * x + m, rtol=1e-6)
        np.testing.assert_allclose(ref["scores"], (x - m).sum(-1), rtol=1e-5)
        export = report[module]["stages"]["export"]["meta"]
        assert set(export["outputs"]) == {"features", "scores"}
        assert export["outputs"]["scores"]["shape"] == [2]
        # the engine's tensors carry the manifest's names, checked against the reference above
        io = report[module]["stages"]["build"]["meta"]["io"]
        assert sorted(t["name"] for t in io["inputs"]) == sorted([ids, mask])
        assert sorted(t["name"] for t in io["outputs"]) == ["features", "scores"]
        assert report[module]["stages"]["verify"]["meta"]["passed"]


@pytest.mark.parametrize(
    "body, needles",
    [
        (
            "inputs.attention_mak = { shape = [2, 8] }\ninputs.input_ids = { shape = [2, 8] }",
            [
                "modules.bad.inputs.attention_mak",
                "input 'attention_mak' matches no parameter of forward()",
                "its parameters: input_ids, token_type_ids, attention_mask",
            ],
        ),
        (
            'inputs.m = { shape = [2, 8], arg = "mask" }\ninputs.input_ids = { shape = [2, 8] }',
            ["modules.bad.inputs.m", "(arg 'mask') matches no parameter", "attention_mask"],
        ),
        (
            "inputs.attention_mask = { shape = [2, 8] }\ninputs.input_ids = { shape = [2, 8] }\n"
            'outputs = ["scores", "feature"]',
            [
                "modules.bad.outputs",
                "returns outputs named ['features', 'scores']",
                "outputs lists ['scores', 'feature']",
            ],
        ),
    ],
)
def test_binding_mistakes_are_one_line(tmp_path, body, needles):
    _write(tmp_path, f'[modules.bad]\nfactory = "keyed:make_keyed"\n{body}\n')
    r = run_cli("build", "--quiet", cwd=tmp_path, timeout=600)
    one_error_line(r, 2, "module 'bad'", *needles)
    assert not list(tmp_path.glob("engines/*/bad.engine"))
