"""Shared test helpers. Tests are real: torch export, onnxruntime, TensorRT-RTX CPU builds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import pytest

# the one switch that arms the fault hooks (trtforge/cache/testhooks.py), before any trtforge import;
# the CLI processes the tests start inherit it
os.environ["TRTFORGE_TEST_HOOKS"] = "1"
REPO = Path(__file__).resolve().parent.parent
TRTFORGE = str(Path(sys.executable).parent / "trtforge")


def has_gpu() -> bool:
    from trtforge import backends as be

    return shutil.which("nvidia-smi") is not None and bool(be.gpus())


def pytest_collection_modifyitems(config, items):
    if has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def onnx_model(text: str) -> onnx.ModelProto:
    """A model from ONNX text (onnx.parser), checked."""
    model = onnx.parser.parse_model(text)
    onnx.checker.check_model(model)
    return model


def write_model(model: onnx.ModelProto, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "model.onnx"))
    return folder


def run_cli(*args, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """The console script, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([TRTFORGE, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def rng_array(shape, dtype=np.float32, seed=0, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)


@pytest.fixture
def example_project(tmp_path) -> Path:
    """A copy of the repo's examples and engines.toml in a temp folder (own cache, own engines/)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "engines.toml", tmp_path / "engines.toml")
    return tmp_path
