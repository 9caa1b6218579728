"""Export with named dynamic dims (trtforge/export/dynamic.py): the ONNX keeps them symbolic under
the manifest's names, and a dim the model pins is a one-line error naming it (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from tests.conftest import REPO, run_cli
from trtforge.verify.run import NOT_EVALUATED

pytestmark = pytest.mark.slow  # every test here runs the console script

MODEL = '''
import torch
import torch.nn.functional as F
from torch import nn


class Unshuffle(nn.Module):
    """pixel_unshuffle needs even heights and widths: torch asks for a multiple of 2."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(12, 4, 1)

    def forward(self, x):
        return self.conv(F.pixel_unshuffle(x, 2))


def make():
    torch.manual_seed(0)
    return Unshuffle()


class Branch(nn.Module):
    """Runs at any height, but branches on it: the export pins the height to the example's."""

    def forward(self, x):
        return x * 2 if x.shape[2] == 12 else x * 3


def branch():
    return Branch()
'''


def project(tmp_path: Path, manifest: str) -> Path:
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "unshuffle.py").write_text(MODEL)
    (tmp_path / "engines.toml").write_text(manifest)
    return tmp_path


def exported_model(root: Path) -> onnx.ModelProto:
    # the export's folder: the one that recorded the example inputs beside its model
    (view,) = {p.parent for p in (root / ".trtforge-cache").rglob("caller_inputs.p0.min.npz")}
    return onnx.load(str(view / "model.onnx"), load_external_data=False)


def dims_of(vi) -> list:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def test_a_dim_the_model_pins_is_named_with_its_value(tmp_path):
    root = project(
        tmp_path,
        """
[modules.b]
factory = "unshuffle:branch"
inputs.x = { shape = [1, 3, "h", 8] }
dims.h = { min = 8, opt = 12, max = 16 }
""",
    )
    out = run_cli("build", cwd=root)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("trtforge: error:") and "Traceback" not in out.stderr
    assert "modules.b.dims.h" in line and "dimension 'h' cannot vary" in line and "fixes it to 12" in line, line


def test_a_profile_point_the_model_cannot_take_names_the_set(tmp_path):
    # the ViT's position embedding fixes the number of patches: its forward fails at other heights
    root = project(
        tmp_path,
        """
[modules.vit]
factory = "examples.vit:make_vit"
factory_args = { image = 32, patch = 16, dim = 32, depth = 1, heads = 2 }
inputs.image = { shape = [2, 3, "height", 32] }
dims.height = { min = 16, opt = 32, max = 64 }
""",
    )
    out = run_cli("build", cwd=root)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("trtforge: error:") and "Traceback" not in out.stderr
    assert "modules.vit.dims" in line and "forward failed on input set p0.min (image[2, 3, 16, 32])" in line, line
    assert not (root / "engines" / "index.json").exists() or "vit" not in (root / "engines" / "index.json").read_text()


def test_a_dim_that_must_be_a_multiple_names_multiple_of(tmp_path):
    root = project(
        tmp_path,
        """
[modules.u]
factory = "unshuffle:make"
inputs.x = { shape = [1, 3, "h", 8] }
dims.h = { min = 8, opt = 12, max = 16 }
""",
    )
    out = run_cli("build", cwd=root)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "modules.u.dims.h" in line and "multiple of 2" in line and "multiple_of = 2" in line, line


def test_declared_multiple_exports_symbolic_dims_under_the_manifest_names(tmp_path):
    root = project(
        tmp_path,
        """
[modules.u]
factory = "unshuffle:make"
inputs.x = { shape = ["batch", 3, "h", 8] }
dims.batch = { min = 1, opt = 2, max = 4 }
dims.h = { min = 8, opt = 12, max = 16, multiple_of = 2 }
""",
    )
    out = run_cli("build", "--json", cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    model = exported_model(root)
    (x,) = model.graph.input
    assert dims_of(x) == ["batch", 3, "h", 8]
    # the output's batch is the same symbol; its height is an expression of h (h / 2)
    (y,) = model.graph.output
    assert dims_of(y)[0] == "batch" and isinstance(dims_of(y)[2], str) and "h" in dims_of(y)[2]
    (m,) = json.loads(out.stdout)["modules"]
    verify = m["stages"]["verify"]["meta"]
    # the corners, then verify.shapes (default 2) seeded shapes inside the profile
    assert verify["input_sets"] == ["example", "p0.min", "p0.opt", "p0.max", "p0.shape1", "p0.shape2"]
    assert (
        verify["checks"]["precision_rules"]["status"] == "ok" and verify["checks"]["precision_rules"]["input_sets"] == 6
    )
    for stage in ("export", "graph_passes"):  # the final check passed (they name a failing stage)
        assert verify["checks"][stage]["reason"] == NOT_EVALUATED
