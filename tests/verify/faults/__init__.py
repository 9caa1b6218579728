"""Modules and a graph pass with known faults, each meant to be blamed on one stage."""

import shutil
from pathlib import Path


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
