"""Data files are part of the export key by content (issue 13): touching one rebuilds nothing,
changing its bytes re-exports. Through the console script, on a tiny real project."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # real exports and engine builds

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
inputs.x = { shape = [2, 8], file = "data/x.npy" }
verify.input_sets = ["data/set_*.npz"]
"""


def _build(root) -> dict:
    r = run_cli("build", "--json", cwd=root, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (module,) = json.loads(r.stdout)["modules"]
    return {s: v["state"] for s, v in module["stages"].items()}


def _explain(root) -> str:
    r = run_cli("explain", cwd=root)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _touch(path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns + 10**10, st.st_mtime_ns + 10**10))


def test_data_files_key_the_export_by_content(tmp_path):
    (tmp_path / "lin.py").write_text(MODEL)
    (tmp_path / "engines.toml").write_text(MANIFEST)
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "x.npy", np.full((2, 8), 0.5, np.float16))
    np.savez(data / "set_a.npz", x=np.full((2, 8), -0.5, np.float16))
    assert set(_build(tmp_path).values()) == {"ok"}

    for path in (data / "x.npy", data / "set_a.npz"):  # same bytes, new mtime: nothing rebuilds
        _touch(path)
    assert "export: up to date" in _explain(tmp_path)
    assert set(_build(tmp_path).values()) == {"cached"}

    np.save(data / "x.npy", np.full((2, 8), 0.25, np.float16))
    assert "material.example_data.input_files.x" in _explain(tmp_path)
    assert _build(tmp_path)["export"] == "ok"

    np.savez(data / "set_a.npz", x=np.full((2, 8), -0.25, np.float16))
    assert "material.example_data.named_sets.data/set_a.npz" in _explain(tmp_path)
    assert _build(tmp_path)["export"] == "ok"
    (folder,) = [p for p in (tmp_path / "engines").iterdir() if p.is_dir()]
    with np.load(folder / "lin.inputs.npz") as z, np.load(folder / "lin.inputs.s1.npz") as s:
        assert (z["x"] == 0.25).all() and (s["x"] == -0.25).all()
