"""Issue 24, point 1: `verify.outputs.NAME.valid = "INPUT"` leaves out the output elements at
positions where that 0/1 input is 0.

The console-script test is the issue's case: a tiny LLaMA-style causal LM (transformers
LlamaConfig, random init) fed two prompts, one left-padded by 7 tokens, with attention_mask and
position_ids from files as `generate()` makes them. Its logits at the padded positions are
undefined (no caller reads them) and move far between FP32 and FP16; every real position agrees.
Without `valid` the failure says that every failing element lies where `attention_mask` is 0 and
names the setting; with it the module publishes and the report counts the elements left out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from trtforge.errors import ManifestError, VerifySetupError
from trtforge.manifest import parse_manifest
from trtforge.verify.metrics import compare_all, merge_sets
from trtforge.verify.valid import check_references, keep_mask

PAD = 7
SEQ = 16

LLAMA = """
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM


class Logits(nn.Module):
    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, position_ids):
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return out.logits


def make():
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    return Logits(LlamaForCausalLM(cfg).eval())
"""

MANIFEST = """
[modules.llama]
factory = "llama_tiny:make"
outputs = ["logits"]
inputs.input_ids = {{ shape = [2, {seq}], dtype = "int64", file = "samples/input_ids.npy" }}
inputs.attention_mask = {{ shape = [2, {seq}], dtype = "int64", file = "samples/attention_mask.npy" }}
inputs.position_ids = {{ shape = [2, {seq}], dtype = "int64", file = "samples/position_ids.npy" }}
{valid}
"""


def left_padded_batch(pad: int = PAD, seq: int = SEQ) -> dict:
    """Two prompts, the first left-padded by `pad` tokens: attention_mask and position_ids as
    transformers' generate() makes them (positions count real tokens; padded ones hold 1)."""
    rng = np.random.default_rng(0)
    mask = np.ones((2, seq), np.int64)
    mask[0, :pad] = 0
    ids = rng.integers(3, 128, size=(2, seq)).astype(np.int64)
    ids[0, :pad] = 0  # the pad token
    pos = np.cumsum(mask, axis=-1) - 1
    pos = np.where(mask == 0, 1, pos).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos}


def _project(root, valid: str = "") -> None:
    (root / "llama_tiny.py").write_text(LLAMA)
    (root / "samples").mkdir(exist_ok=True)
    for name, arr in left_padded_batch().items():
        np.save(root / "samples" / f"{name}.npy", arr)
    (root / "engines.toml").write_text(MANIFEST.format(seq=SEQ, valid=valid))


@pytest.mark.slow
def test_left_padded_llama_fails_naming_the_setting_then_publishes_with_valid(tmp_path):
    _project(tmp_path)
    r = run_cli("build", cwd=tmp_path, timeout=900)
    # at 7fe7866: exit 3 blaming the padded positions' logits, with no word of where they lie
    assert r.returncode == 3, r.stderr[-3000:]
    assert "lie where input 'attention_mask' is 0" in r.stderr, r.stderr[-3000:]
    assert 'verify.outputs.logits.valid = "attention_mask"' in r.stderr
    assert (
        not (tmp_path / "engines" / "index.json").exists()
        or "llama" not in (tmp_path / "engines" / "index.json").read_text()
    )

    _project(tmp_path, valid='verify.outputs.logits = { valid = "attention_mask" }')
    r = run_cli("build", "--json", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    (module,) = json.loads(r.stdout)["modules"]
    assert module["published"], module
    # only verify ran again: the earlier stages' keys do not hold verify settings
    assert module["stages"]["build"]["state"] == "cached", module["stages"]
    report = (tmp_path / "engines" / "REPORT.md").read_text()
    # 7 padded rows of 128 logits in the one example set
    assert f"logits: {PAD * 128} of {2 * SEQ * 128} elements left out" in report, report


def _spec(toml_tail: str):
    text = (
        '[modules.m]\nfactory = "x:make"\noutputs = ["y", "z"]\n'
        'inputs.x = { shape = [2, 4], dtype = "float16" }\n'
        'inputs.mask = { shape = [2, 4], dtype = "int64", kind = "padding_mask", pad = 1 }\n' + toml_tail
    )
    from pathlib import Path

    return parse_manifest(text, Path("/nonexistent/engines.toml")).module("m")


def test_valid_must_name_an_integer_or_bool_input():
    assert _spec('verify.outputs.y = { valid = "mask" }\n').tolerance("y")["valid"] == "mask"
    with pytest.raises(ManifestError, match="'msk' is not an input of the module.*did you mean 'mask'"):
        _spec('verify.outputs.y = { valid = "msk" }\n')
    with pytest.raises(ManifestError, match="input 'x' is float16; valid needs an integer or bool input"):
        _spec('verify.outputs.y = { valid = "x" }\n')


def test_a_mask_that_does_not_line_up_is_one_line_naming_both():
    with pytest.raises(VerifySetupError) as e:
        keep_mask("y", (2, 5, 8), {"mask": np.ones((2, 4), np.int64)}, "mask", module="m")
    line = e.value.one_line()
    assert "input 'mask' [2, 4] does not line up with output 'y' [2, 5, 8]" in line
    assert "verify.outputs.y.valid" in line and "\n" not in line
    assert e.value.exit_code == 2
    # a dim of 1 broadcasts; the mask's dims are the output's leading ones
    assert keep_mask("y", (2, 4, 8), {"mask": np.ones((1, 4), np.int64)}, "mask").shape == (2, 4, 8)


def test_left_out_elements_are_counted_and_judged_by_nothing():
    mask = np.array([[0, 0, 1, 1], [1, 1, 1, 1]], np.int64)
    ref = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    out = ref.copy()
    out[0, :2] += 5.0  # garbage at the padded positions only, NaN at one of them
    out[0, 0, 0] = np.nan
    tol = {"atol": 1e-2, "rtol": 1e-2, "max_outside": 1e-3, "min_cosine": 0.999}
    plain = compare_all({"y": out}, {"y": ref}, lambda n: tol, {"mask": mask})["y"]
    assert not plain["ok"]  # without `valid`: NaN; the padding hint needs finite outputs
    out[0, 0, 0] = 1e3
    plain = compare_all({"y": out}, {"y": ref}, lambda n: tol, {"mask": mask})["y"]
    assert not plain["ok"] and 'verify.outputs.y.valid = "mask"' in plain["reason"], plain
    m = compare_all({"y": out}, {"y": ref}, lambda n: {**tol, "valid": "mask"}, {"mask": mask})["y"]
    assert m["ok"] and m["left_out"] == 6 and m["elements"] == 24, m
    merged = merge_sets([("a", {"y": m}), ("b", {"y": m})])["y"]
    assert merged["left_out"] == 12 and merged["elements"] == 48
    # a failure at a real position is not blamed on padding
    out[1, 3, 2] += 5.0
    plain = compare_all({"y": out}, {"y": ref}, lambda n: tol, {"mask": mask})["y"]
    assert not plain["ok"] and "valid" not in plain["reason"]


def test_a_nan_at_a_left_out_position_does_not_break_the_reference():
    mask = np.array([[0, 1], [1, 1]], np.int64)
    ref = np.random.default_rng(1).normal(size=(2, 2, 3)).astype(np.float32)
    ref[0, 0] = np.nan  # a padded row: no caller reads it
    sets = [("example", {"mask": mask}, {"y": ref})]
    base = {"atol": 1e-2, "rtol": 1e-2}
    check_references(sets, lambda n: {**base, "valid": "mask"}, "m")
    with pytest.raises(VerifySetupError, match="the FP32 reference is broken: 3 of 12 values are NaN/Inf"):
        check_references(sets, lambda n: base, "m")


def test_the_padding_hint_needs_a_mask_with_real_and_padded_positions():
    from trtforge.verify.valid import zero_input_hint

    failing = np.zeros((2, 4, 3), bool)
    failing[0, 0] = True
    assert zero_input_hint("y", failing, {"flag": np.zeros((1,), np.int64)}) is None  # all 0: says nothing
    assert zero_input_hint("y", failing, {"ids": np.array([[0, 5, 1, 1], [1, 1, 1, 1]])}) is None  # not 0/1
    hint = zero_input_hint("y", failing, {"mask": np.array([[0, 1, 1, 1], [1, 1, 1, 1]])})
    assert hint and "all 3 elements outside tolerance lie where input 'mask' is 0" in hint
