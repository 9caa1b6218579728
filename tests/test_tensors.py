"""Example values from each input source (trtforge/data/tensors.py): what the manifest says is what the
model gets, at the declared shape or any concrete shape a caller asks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trtforge.data.tensors import make_inputs, random_inputs
from trtforge.manifest import parse_manifest


def _specs(tmp_path: Path, inputs: str):
    text = f"[modules.m]\nfactory = 'x:y'\n{inputs}"
    return parse_manifest(text, tmp_path / "engines.toml").modules[0].inputs


def test_value_padding_mask_positions(tmp_path):
    specs = _specs(
        tmp_path,
        """
inputs.t = { shape = [1], dtype = "int64", value = 999 }
inputs.ones = { shape = [2, 5], dtype = "int64", value = 1 }
inputs.mask = { shape = [3, 6], dtype = "int64", kind = "padding_mask", pad = [0, 2] }
inputs.left = { shape = [1, 4], dtype = "bool", kind = "padding_mask", pad = 1, side = "left" }
inputs.pos = { shape = [2, 4], dtype = "int32", kind = "positions", start = 2 }
""",
    )
    x = make_inputs(specs, seed=0)
    assert x["t"].tolist() == [999] and x["t"].dtype == np.int64
    assert (x["ones"] == 1).all() and x["ones"].shape == (2, 5)
    # rows cycle through pad = [0, 2]: full, two padded at the end, full
    assert x["mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0], [1] * 6]
    assert x["left"].tolist() == [[False, True, True, True]]
    assert x["pos"].tolist() == [[2, 3, 4, 5]] * 2 and x["pos"].dtype == np.int32
    assert random_inputs(specs) == {}


def test_drawn_sources_follow_their_parameters(tmp_path):
    specs = _specs(
        tmp_path,
        """
inputs.n = { shape = [64, 64], dist = "normal", mean = 3.0, std = 0.5, dtype = "float32" }
inputs.ids = { shape = [64, 64], dtype = "int64", kind = "token_ids", vocab_size = 7 }
inputs.u = { shape = [64, 64], range = [2.0, 4.0] }
""",
    )
    x = make_inputs(specs, seed=0)
    assert abs(float(x["n"].mean()) - 3.0) < 0.05 and abs(float(x["n"].std()) - 0.5) < 0.05
    assert set(np.unique(x["ids"]).tolist()) == set(range(7))
    assert 2.0 <= float(x["u"].min()) and float(x["u"].max()) <= 4.0
    assert random_inputs(specs) == {"n": "normal", "ids": "token_ids", "u": "uniform"}
    again, other = make_inputs(specs, seed=0), make_inputs(specs, seed=1)
    assert all(np.array_equal(x[k], again[k]) for k in x)
    assert not np.array_equal(x["n"], other["n"])


def test_npy_and_npz_files_broadcast_and_convert(tmp_path):
    np.save(tmp_path / "row.npy", np.arange(8, dtype=np.int32))
    np.savez(tmp_path / "pair.npz", a=np.full((2, 8), 3, np.int64), b=np.ones((1, 8), np.float32))
    specs = _specs(
        tmp_path,
        """
inputs.row = { shape = [2, 8], dtype = "int64", file = "row.npy" }
inputs.a = { shape = [2, 8], dtype = "float16", file = "pair.npz", key = "a" }
inputs.b = { shape = [2, 8], file = "pair.npz", key = "b" }
""",
    )
    x = make_inputs(specs, seed=0, root=tmp_path)
    assert x["row"].tolist() == [list(range(8))] * 2 and x["row"].dtype == np.int64
    assert x["a"].dtype == np.float16 and (x["a"] == 3).all()
    assert x["b"].dtype == np.float16 and (x["b"] == 1).all()


def test_image_layout_resize_and_normalisation(tmp_path):
    from PIL import Image

    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 255, 51, 0
    Image.fromarray(pixels).save(tmp_path / "red.png")
    specs = _specs(
        tmp_path,
        """
inputs.nchw = { shape = [2, 3, 8, 8], dtype = "float32", file = "red.png", mean = [0.5, 0.5, 0.5], std = [0.5, 0.25, 1.0] }
inputs.nhwc = { shape = [1, 8, 8, 3], dtype = "uint8", file = "red.png", layout = "NHWC" }
inputs.grey = { shape = [1, 8, 8], dtype = "float16", file = "red.png" }
""",
    )
    x = make_inputs(specs, seed=0, root=tmp_path)
    # (pixel / 255 - mean) / std per channel, resized 16 -> 8, repeated over the batch of 2
    expect = [(1.0 - 0.5) / 0.5, (0.2 - 0.5) / 0.25, (0.0 - 0.5) / 1.0]
    assert x["nchw"].shape == (2, 3, 8, 8)
    assert np.allclose(x["nchw"][:, :, 3, 3], [expect, expect], atol=1e-6)
    assert x["nhwc"][0, 3, 3].tolist() == [255, 51, 0]
    grey = float(x["grey"][0, 0, 0])  # PIL's L = 0.299 R + 0.587 G + 0.114 B, scaled to [0, 1]
    assert abs(grey - (0.299 * 255 + 0.587 * 51) / 255) < 0.01

    Image.fromarray(pixels).save(tmp_path / "red.jpg", quality=95)  # lossy: the colour within a few levels
    jpg = _specs(tmp_path, 'inputs.x = { shape = [1, 8, 8, 3], dtype = "uint8", file = "red.jpg", layout = "NHWC" }')
    assert np.abs(make_inputs(jpg, root=tmp_path)["x"][0, 3, 3].astype(int) - [255, 51, 0]).max() <= 4


@pytest.mark.parametrize("shape", [(1, 4), (3, 10)])
def test_every_source_makes_any_concrete_shape(tmp_path, shape):
    """The dims contract: a caller gives the concrete shape per input; every generator follows it."""
    from PIL import Image

    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "img.png")
    np.save(tmp_path / "one.npy", np.ones((1, 1), np.float32))
    specs = _specs(
        tmp_path,
        """
inputs.u = { shape = [2, 6] }
inputs.n = { shape = [2, 6], dist = "normal" }
inputs.v = { shape = [2, 6], value = 2 }
inputs.f = { shape = [2, 6], file = "one.npy" }
inputs.m = { shape = [2, 6], dtype = "int64", kind = "padding_mask", pad = 1 }
inputs.i = { shape = [2, 6], dtype = "int64", kind = "token_ids", vocab_size = 5 }
inputs.p = { shape = [2, 6], dtype = "int64", kind = "positions" }
""",
    )
    x = make_inputs(specs, seed=0, root=tmp_path, shapes={s.name: shape for s in specs})
    assert {k: v.shape for k, v in x.items()} == {s.name: shape for s in specs}
    assert x["m"][:, -1].tolist() == [0] * shape[0] and x["m"][:, 0].tolist() == [1] * shape[0]
    img = _specs(tmp_path, 'inputs.img = { shape = [1, 3, 4, 4], file = "img.png" }')
    assert make_inputs(img, root=tmp_path, shapes={"img": (2, 3, 7, 9)})["img"].shape == (2, 3, 7, 9)
