"""Modules and a graph pass with known faults, each meant to be blamed on one stage."""

import shutil
from pathlib import Path

import pytest


def faults_project(root: Path, manifest: str) -> Path:
    """`root` as a project: this folder copied in as `faults/`, beside `manifest` as engines.toml."""
    shutil.copytree(Path(__file__).parent, root / "faults", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "engines.toml").write_text(manifest)
    return root


# One healthy attention module with a random input set: shared by the predeploy, engine-blame and
# GPU tests, each of which copies this folder next to the manifest.
ATTN_MANIFEST = """
[defaults]
build = { backend = "tensorrt-rtx" }

[modules.attn]
factory = "faults.modules:make_attention"
inputs.x = { shape = [1, 16, 32], dtype = "float16" }
outputs = ["y"]
verify.random_inputs = 1
"""

# The predeploy tests' manifest: ATTN_MANIFEST with a task metric (only the verify key differs)
ATTN_TOPK_MANIFEST = ATTN_MANIFEST + 'verify.outputs.y = { metric = "topk", k = 3 }\n'


def _build_attn(root: Path) -> None:
    from tests.conftest import run_cli

    faults_project(root, ATTN_TOPK_MANIFEST)
    proc = run_cli("build", "engines.toml", cwd=root)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="session")
def attn_built(tmp_path_factory) -> Path:
    """ATTN_TOPK_MANIFEST built and published once per test run, for every xdist worker: copy it
    (its cache also serves ATTN_MANIFEST up to the build stage)."""
    from tests.conftest import built_once

    return built_once(tmp_path_factory, "attn", _build_attn)
