"""A tiny project built once per test run (its cache and engines/), for the console-script tests of
the CLI's output and leftovers; tests that change it work on a copy (`tiny_copy`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import built_once, run_cli
from tests.errors.conftest import HERE as ERRORS

TINY = """
[modules.tiny]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 8, 8] }
"""


def _make(root: Path) -> None:
    shutil.copy(ERRORS / "bad_models.py", root / "bad_models.py")
    (root / "engines.toml").write_text(TINY)
    r = run_cli("build", "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def tiny_built(tmp_path_factory) -> Path:
    """Read only: copy it (`tiny_copy`) to change anything."""
    return built_once(tmp_path_factory, "cli-tiny", _make)


@pytest.fixture
def tiny_copy(tiny_built, tmp_path) -> Path:
    root = tmp_path / "p"
    shutil.copytree(tiny_built, root, symlinks=True)
    return root
