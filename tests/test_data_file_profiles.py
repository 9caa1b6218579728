"""A data file feeds a dynamic input at every profile corner (issue #29's first day, row B): along
a named axis the file may have any length, cut or repeated to each corner's size; a file that does
not fit says the declared shape once, the same line at every corner."""

from __future__ import annotations

import numpy as np
import pytest

from trtforge.data.tensors import make_inputs
from trtforge.errors import ManifestError
from trtforge.manifest import load_manifest

MANIFEST = """
[modules.bert]
factory = "models:make"
inputs.ids = { shape = ["batch", 16], dtype = "int64", file = "ids.npy" }
dims.batch = { min = 1, opt = 2, max = 4 }
"""


def _specs(tmp_path, rows: np.ndarray):
    (tmp_path / "models.py").write_text("def make():\n    return None\n")
    (tmp_path / "engines.toml").write_text(MANIFEST)
    np.save(tmp_path / "ids.npy", rows)
    return load_manifest(tmp_path / "engines.toml").module("bert").inputs


@pytest.mark.parametrize("batch", [1, 2, 4, 5])
def test_one_file_serves_every_batch(tmp_path, batch):
    rows = np.arange(3 * 16, dtype=np.int64).reshape(3, 16)  # 3 rows: no corner's size, no broadcast
    specs = _specs(tmp_path, rows)
    ids = make_inputs(specs, shapes={"ids": (batch, 16)}, root=tmp_path)["ids"]
    assert ids.shape == (batch, 16) and ids.dtype == np.int64
    assert (ids == rows[np.arange(batch) % 3]).all()  # cut to the first rows, or repeated in order


def test_a_file_that_cannot_fit_names_the_declared_shape_once(tmp_path):
    specs = _specs(tmp_path, np.zeros((4, 15), dtype=np.int64))  # the static axis is wrong
    lines = set()
    for batch in (1, 2, 4):
        with pytest.raises(ManifestError) as e:
            make_inputs(specs, shapes={"ids": (batch, 16)}, root=tmp_path)
        lines.add(e.value.one_line())
    assert len(lines) == 1, lines  # not a different shape asked at each corner
    (line,) = lines
    assert "'ids.npy' holds int64[4, 15]; the input is int64[batch, 16]" in line
    assert "any length along batch" in line
