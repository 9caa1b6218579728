"""Data outside the project (issue 29): `file = "/data/ids.npy"` is accepted, read, and keyed by its
content, not by the folder it lies in on this machine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from trtforge.export import ExportStage
from trtforge.manifest import load_manifest

MODEL = """
import torch
from torch import nn


def make():
    torch.manual_seed(0)
    return nn.Linear(8, 4)
"""

MANIFEST = """
[defaults]
precision.rules = []

[modules.lin]
factory = "lin:make"
inputs.x = {{ shape = [2, 8], file = "{path}" }}
"""


def _project(root, data_file) -> None:
    root.mkdir(exist_ok=True)
    (root / "lin.py").write_text(MODEL)
    (root / "engines.toml").write_text(MANIFEST.format(path=data_file))


def _export_key(root) -> dict:
    manifest = load_manifest(root / "engines.toml")
    return ExportStage().key_material(manifest.modules[0], manifest.root)


def test_absolute_data_path_is_keyed_by_content_not_folder(tmp_path):
    project = tmp_path / "project"
    a, b = tmp_path / "data_a", tmp_path / "data_b"
    for folder in (a, b):
        folder.mkdir()
        np.save(folder / "x.npy", np.full((2, 8), 0.5, np.float16))
    _project(project, a / "x.npy")
    key_a = _export_key(project)
    _project(project, b / "x.npy")
    assert _export_key(project) == key_a  # same bytes elsewhere on disk: the same key
    assert str(tmp_path) not in json.dumps(key_a)
    np.save(b / "x.npy", np.full((2, 8), 0.25, np.float16))
    assert _export_key(project) != key_a  # new bytes: a new key


def test_missing_absolute_data_file_names_the_field(tmp_path):
    from trtforge.errors import ManifestError

    _project(tmp_path / "p", tmp_path / "nowhere" / "x.npy")
    with pytest.raises(ManifestError) as e:
        _export_key(tmp_path / "p")
    assert "inputs.x.file" in e.value.one_line() and "nowhere/x.npy' does not exist" in e.value.one_line()


@pytest.mark.slow  # runs the console script and builds an engine
def test_build_reads_data_outside_the_project(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    values = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8).astype(np.float16)
    np.save(data / "x.npy", values)
    project = tmp_path / "project"
    _project(project, data / "x.npy")
    r = run_cli("build", "--json", cwd=project, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    cache = project / ".trtforge-cache"
    inputs = [p for p in cache.rglob("inputs.npz")]
    assert inputs, "the export recorded no example inputs"
    np.testing.assert_array_equal(np.load(inputs[0])["x"], values)
