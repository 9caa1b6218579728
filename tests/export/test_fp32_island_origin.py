"""The FP32-island warning (issue 29): islands in an installed library's module (diffusers'
timestep embedding computes Sin/Cos in float32 on purpose) are attributed to that library with how
to keep or silence them; the project's own are to be fixed; `export.expected_fp32_islands`
silences the ones meant; the warning is printed once per module, and not again on a build where
nothing changed."""

from __future__ import annotations

import pytest
from torch import nn

from tests.conftest import run_cli
from tests.export.test_export_stage import export, spec
from trtforge.driver.report import island_warning
from trtforge.errors import ExportError

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.slow  # real exports of a diffusers module (and the console script below)
HERE = "tests.export.test_fp32_island_origin"


class TimeEmbed(nn.Module):
    """diffusers' own sinusoidal timestep embedding (float32 inside an FP16 model), then a Linear."""

    def __init__(self):
        super().__init__()
        from diffusers.models.embeddings import Timesteps

        self.time_proj = Timesteps(16, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.linear = nn.Linear(16, 8)

    def forward(self, timestep):
        return self.linear(self.time_proj(timestep).to(self.linear.weight.dtype))


def make_time_embed():
    return TimeEmbed()


MANIFEST = f"""
[modules.m]
factory = "{HERE}:make_time_embed"
inputs.timestep = {{ shape = [2], dtype = "int64", value = 10 }}
"""


class _Result:
    """The one field of a ModuleResult that island_warning reads (a stand-in: no build here)."""

    def __init__(self, meta):
        from trtforge.driver.results import StageStatus

        self.stages = {"export": StageStatus("ok", meta=meta)}


def test_islands_in_library_code_are_attributed_to_the_library(tmp_path):
    meta = export(spec(MANIFEST, tmp_path), tmp_path / "w")
    sin = next(i for i in meta["fp32_islands"] if i["op"] == "Sin")
    assert sin["in"] == "diffusers.models.embeddings.Timesteps" and sin["library"] == "diffusers"
    assert sin["scope"] == "time_proj" and sin["expected"] is False
    text = island_warning(_Result(meta))
    assert "in diffusers library code (diffusers.models.embeddings.Timesteps at time_proj: " in text
    assert "Sin, Cos" in text and "nothing to fix" in text and "fix them" not in text
    assert 'export.expected_fp32_islands = ["diffusers.models.embeddings.Timesteps"]' in text


def test_project_islands_still_say_fix_them(tmp_path):
    body = '[modules.m]\nfactory = "tests.errors.bad_models:make_fp32_island"\ninputs.x = { shape = [1, 8] }\n'
    meta = export(spec(body, tmp_path), tmp_path / "w")
    text = island_warning(_Result(meta))
    assert "tests.errors.bad_models.Fp32Island" in text and "node_add (Add)" in text and "fix them" in text


def test_expected_islands_are_silent_and_not_forbidden(tmp_path):
    body = MANIFEST + 'export.forbid_fp32_islands = true\nexport.expected_fp32_islands = ["diffusers"]\n'
    meta = export(spec(body, tmp_path), tmp_path / "w")  # forbid does not refuse the expected ones
    assert meta["fp32_islands"] and all(i["expected"] for i in meta["fp32_islands"])
    assert island_warning(_Result(meta)) is None
    with pytest.raises(ExportError, match="in diffusers.models.embeddings.Timesteps"):
        export(spec(MANIFEST + "export.forbid_fp32_islands = true\n", tmp_path), tmp_path / "f")


MODEL = """
from torch import nn


class TimeEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        from diffusers.models.embeddings import Timesteps

        self.time_proj = Timesteps(16, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.linear = nn.Linear(16, 8)

    def forward(self, timestep):
        return self.linear(self.time_proj(timestep).to(self.linear.weight.dtype))


def make_time_embed():
    return TimeEmbed()
"""

TARGETS = """
[targets.ampere]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.6"]

[targets.ada]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.9"]
"""


# runs the console script and builds two engines
def test_the_warning_is_printed_once_and_not_on_a_no_change_build(tmp_path):
    (tmp_path / "time_embed.py").write_text(MODEL)
    (tmp_path / "engines.toml").write_text(MANIFEST.replace(HERE, "time_embed") + TARGETS)
    first = run_cli("build", cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    warned = [ln for ln in first.stderr.splitlines() if "FP32 island" in ln]
    assert len(warned) == 1 and "module 'm'" in warned[0] and "diffusers" in warned[0], first.stderr
    again = run_cli("build", cwd=tmp_path, timeout=900)
    assert again.returncode == 0 and "FP32 island" not in again.stderr, again.stderr
    assert "FP32 island" in (tmp_path / "engines" / "REPORT.md").read_text()  # the report keeps it
