"""The tiny project with two TensorRT-RTX targets, built once per session (real CPU builds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.cache.conftest import _built_once, build, built_project, set_manifest, tiny_project, write_project  # noqa: F401  (fixtures)
from tests.conftest import built_once

TWO_TARGETS = """
[targets.a]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.6"]

[targets.b]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.9"]
"""


def set_two_targets(root: Path, width: int = 16) -> None:
    set_manifest(root, width=width)
    with open(root / "engines.toml", "a") as f:
        f.write(TWO_TARGETS)


def _build_two(folder: Path) -> None:
    root = write_project(folder / "proj")
    set_two_targets(root)
    proc, _ = build(root)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="session")
def _two_targets_once(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory, "tiny-two-targets", _build_two) / "proj"


@pytest.fixture
def two_targets(_two_targets_once, tmp_path) -> Path:
    """The tiny project with [targets.a] and [targets.b], both built and published (a copy)."""
    dest = tmp_path / "proj"
    shutil.copytree(_two_targets_once, dest, symlinks=True)
    return dest
