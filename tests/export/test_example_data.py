"""Real example data (issue 13), through the console script: a BERT padded mask read from a .npy,
GPT-2's causal mask with an all-ones attention mask (`value = 1`), named example sets, and the
report naming the set that failed and the inputs that were drawn at random. Tiny configs, random
weights, no downloads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow  # real exports and engine builds

MODELS = """
import torch
from torch import nn


class Bert(nn.Module):
    def __init__(self):
        super().__init__()
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        self.model = BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=128, vocab_size=1000))

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]


class Gpt2(nn.Module):
    def __init__(self):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        torch.manual_seed(0)
        self.model = GPT2Model(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=64))

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                          return_dict=False)[0]


def bert():
    return Bert()


def gpt2():
    return Gpt2()
"""

IDS = 'inputs.input_ids = { shape = [2, 16], dtype = "int64", kind = "token_ids", vocab_size = 1000 }'


def _project(root, manifest: str):
    (root / "lm.py").write_text(MODELS)
    (root / "engines.toml").write_text(manifest)
    (root / "samples").mkdir()
    return root / "samples"


def _modules(r) -> dict:
    return {m["name"]: m for m in json.loads(r.stdout)["modules"]}


def _bundle(root, module: str, tag: str = "") -> dict:
    (folder,) = [p for p in (root / "engines").iterdir() if p.is_dir()]
    with np.load(folder / f"{module}.inputs{tag}.npz") as z:
        return dict(z)


def test_bert_with_a_padded_mask_from_a_file_and_named_sets(tmp_path):
    samples = _project(
        tmp_path,
        f"""
[modules.bert]
factory = "lm:bert"
{IDS}
inputs.attention_mask = {{ shape = [2, 16], dtype = "int64", file = "samples/mask.npy" }}
verify.input_sets = ["samples/batch_*.npz"]
""",
    )
    mask = np.ones((2, 16), np.int64)
    mask[1, 10:] = 0  # the second sentence is 10 tokens long, padded to 16
    np.save(samples / "mask.npy", mask)
    rng = np.random.default_rng(0)
    for i, real in enumerate((16, 5)):
        m = np.zeros((2, 16), np.int64)
        m[:, :real] = 1
        np.savez(samples / f"batch_{i}.npz", input_ids=rng.integers(0, 1000, (2, 16)), attention_mask=m)
    r = run_cli("build", "--json", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    verify = _modules(r)["bert"]["stages"]["verify"]["meta"]
    assert verify["input_sets"] == ["example", "samples/batch_0.npz", "samples/batch_1.npz"]
    assert np.array_equal(_bundle(tmp_path, "bert")["attention_mask"], mask)
    with np.load(samples / "batch_1.npz") as z:
        assert all(np.array_equal(_bundle(tmp_path, "bert", ".s2")[k], z[k]) for k in z.files)


def test_gpt2_causal_mask_passes_with_value_1_and_failures_name_set_and_random_inputs(tmp_path):
    samples = _project(
        tmp_path,
        f"""
[modules.gpt2]
factory = "lm:gpt2"
{IDS}
inputs.attention_mask = {{ shape = [2, 16], dtype = "int64", value = 1 }}

[modules.gpt2_random_mask]
factory = "lm:gpt2"
{IDS}
inputs.attention_mask = {{ shape = [2, 16], dtype = "int64", range = [0, 1] }}

[modules.gpt2_holes]
factory = "lm:gpt2"
{IDS}
inputs.attention_mask = {{ shape = [2, 16], dtype = "int64", value = 1 }}
verify.input_sets = ["samples/holes.npz"]
""",
    )
    holes = np.ones((2, 16), np.int64)
    holes[:, :4] = 0  # the first four positions see no key at all under the causal mask
    np.savez(samples / "holes.npz", input_ids=np.arange(32).reshape(2, 16), attention_mask=holes)
    r = run_cli("build", "--json", cwd=tmp_path, timeout=900)
    assert r.returncode == 3, r.stderr[-3000:]
    modules = _modules(r)
    assert modules["gpt2"]["ok"], modules["gpt2"]["error"]
    assert (_bundle(tmp_path, "gpt2")["attention_mask"] == 1).all()

    random_mask = modules["gpt2_random_mask"]["stages"]["verify"]["reason"]
    assert "input set 'example'" in random_mask, random_mask
    assert "inputs random in set 'example': attention_mask (uniform), input_ids (token_ids)" in random_mask
    assert "give real data with file= or value=" in random_mask
    holes_reason = modules["gpt2_holes"]["stages"]["verify"]["reason"]
    assert "input set 'samples/holes.npz'" in holes_reason, holes_reason
    assert "inputs random" not in holes_reason  # the failing set was given whole: nothing was made up
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("trtforge: error:")]
    assert any("gpt2_random_mask" in ln and "attention_mask (uniform)" in ln for ln in lines), r.stderr


CONV = """
import torch
from torch import nn


def make():
    torch.manual_seed(0)
    return nn.Conv2d(3, 4, 3)
"""


def test_baked_preprocessing_takes_the_image_file_and_named_sets_hold_caller_images(tmp_path):
    """With bake_preprocess the engine takes the caller's uint8 image: an image file is that image
    (not a seeded one), and a named set holds it channels last."""
    from PIL import Image

    (tmp_path / "conv.py").write_text(CONV)
    (tmp_path / "engines.toml").write_text("""
[modules.pre]
factory = "conv:make"
inputs.image = { shape = [1, 3, 16, 16], file = "samples/photo.png" }
passes = [{ name = "bake_preprocess", input = "image", mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] },
          { name = "cleanup" }, { name = "toposort" }]
precision.rules = []
verify.input_sets = ["samples/set_*.npz"]
""")
    (tmp_path / "samples").mkdir()
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "samples" / "photo.png")
    caller = rng.integers(0, 256, (1, 16, 16, 3)).astype(np.uint8)
    np.savez(tmp_path / "samples" / "set_a.npz", image=caller)
    r = run_cli("build", "--json", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    resized = np.asarray(Image.fromarray(photo).resize((16, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(_bundle(tmp_path, "pre")["image"], resized[None])
    assert np.array_equal(_bundle(tmp_path, "pre", ".s1")["image"], caller)
