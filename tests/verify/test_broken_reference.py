"""Issue 24, point 3: a broken FP32 reference is called broken, before anything is compared.

At 7fe7866 a NaN in the reference failed as a verification error blaming the stage under test
(exit 3), and an all-zero reference passed against a candidate degenerate the same way (published).
Now either ends the module with exit 2 naming module, output and input set; nothing is published.
The rule (trtforge/verify/valid.py) must not trip on outputs that are constant by design: a
1-element output, integer outputs, a set whose inputs are all constant, or `constant_ok = true`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from trtforge.errors import VerifySetupError
from trtforge.verify.valid import check_references, reference_problem

MODEL = """
import torch
from torch import nn


class Nan(nn.Module):
    def forward(self, x):
        return torch.sqrt(x - 2.0)  # x in [-1, 1]: NaN everywhere, in FP32 as in FP16


class Dead(nn.Module):
    def forward(self, x):
        return torch.relu(x - 10.0)  # an all-zero "image": what an overflowing reference gives


class Fine(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x, mask):
        # a varying output, a float mask output that is all ones (constant by design), a scalar
        return self.lin(x), mask.float()[:, None, :] * torch.ones(1, 3, 1), x.sum()


def nan():
    return Nan()


def dead():
    return Dead()


def fine():
    torch.manual_seed(0)
    return Fine()
"""

MANIFEST = """
[defaults]
precision.rules = []

[modules.nan]
factory = "refs:nan"
outputs = ["y"]
inputs.x = { shape = [2, 4] }

[modules.dead]
factory = "refs:dead"
outputs = ["y"]
inputs.x = { shape = [2, 4] }

[modules.fine]
factory = "refs:fine"
outputs = ["y", "m", "s"]
inputs.x = { shape = [2, 4] }
inputs.mask = { shape = [2, 4], dtype = "int64", kind = "padding_mask", pad = 0 }
verify.outputs.m = { constant_ok = true }
"""


@pytest.mark.slow
def test_broken_references_end_the_module_with_exit_2_and_publish_nothing(tmp_path):
    (tmp_path / "refs.py").write_text(MODEL)
    (tmp_path / "engines.toml").write_text(MANIFEST)
    r = run_cli("build", "--json", cwd=tmp_path, timeout=900)
    assert r.returncode == 2, r.stderr[-3000:]
    assert (
        "module 'nan': output 'y', input set 'example': the FP32 reference is broken: 8 of 8 values are NaN/Inf"
    ) in r.stderr, r.stderr[-3000:]
    assert "module 'dead': output 'y', input set 'example': the FP32 reference is broken: every one" in r.stderr
    assert "verify.outputs.y.constant_ok = true" in r.stderr
    modules = {m["name"]: m for m in json.loads(r.stdout)["modules"]}
    assert not modules["nan"]["published"] and not modules["dead"]["published"]
    assert modules["fine"]["published"], modules["fine"]
    index = json.loads((tmp_path / "engines" / "index.json").read_text())
    assert "nan" not in json.dumps(index) and "dead" not in json.dumps(index)
    # nothing was compared against the broken reference: the verify stage recorded no checks
    assert modules["nan"]["stages"]["verify"]["state"] == "failed"
    assert not modules["nan"]["stages"]["verify"]["meta"].get("checks")


VARY = {"x": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)}


@pytest.mark.parametrize(
    ("ref", "inputs", "constant_ok", "problem"),
    [
        (np.array([1.0, np.inf], np.float32), VARY, False, "1 of 2 values are NaN/Inf"),
        (np.zeros((1, 3, 8, 8), np.float32), VARY, False, "every one of its 192 values is 0"),
        (np.tile(np.arange(4.0), (1, 5, 1)), VARY, False, "all 5 rows of its [1, 5, 4] are identical"),
        # constant by design, or nothing says it could vary: no problem
        (np.zeros((1, 3, 8, 8), np.float32), VARY, True, None),
        (np.ones((2, 4), np.float32), {"mask": np.ones((2, 4), np.int64)}, False, None),
        (np.float32(3.0), VARY, False, None),  # one element
        (np.array([7.0], np.float32), VARY, False, None),
        (np.zeros((2, 4), np.int64), VARY, False, None),  # integer outputs (argmax ids)
        (np.arange(8.0).reshape(2, 4), VARY, False, None),
        (np.tile(np.arange(4.0), (5, 1)).T.copy(), VARY, False, None),  # identical columns are fine
        # a one-example file tiled to a batch of 2: the rows repeat because the inputs do
        (np.tile(np.arange(3.0), (2, 1)), {"ids": np.tile(np.arange(16), (2, 1))}, False, None),
        (np.tile(np.arange(3.0), (2, 1)), {"ids": np.arange(32).reshape(2, 16)}, False, "all 2 rows"),
    ],
)
def test_the_broken_reference_rule(ref, inputs, constant_ok, problem):
    got = reference_problem(np.asarray(ref), None, inputs, constant_ok)
    assert (got is None) if problem is None else (problem in (got or "")), got


def test_check_references_names_module_output_and_set():
    sets = [("example", VARY, {"y": np.arange(8.0).reshape(2, 4)}), ("random 1", VARY, {"y": np.zeros((2, 4))})]
    with pytest.raises(VerifySetupError) as e:
        check_references(sets, lambda n: {}, "m")
    assert e.value.exit_code == 2
    assert e.value.one_line().startswith(
        "module 'm': output 'y', input set 'random 1': the FP32 reference is broken: every one of its 8 values is 0"
    )


def test_a_broken_reference_on_random_inputs_names_them():
    sets = [("random 1", VARY, {"y": np.full((2, 4), np.nan)})]
    with pytest.raises(VerifySetupError, match=r"inputs random in this set: mask \(uniform\)"):
        check_references(sets, lambda n: {}, "m", {"random 1": {"mask": "uniform"}})
