"""Issue 24, point 4: dynamic modules are checked at the min, opt and max of every profile and at
`verify.shapes` (default 2) seeded random shapes inside each profile, on its multiple_of grid; the
polygraphy bundle has a pair of files per profile (polygraphy runs one profile per command), so
it covers every profile, not only profile 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from trtforge.data.dims import POINTS, point_values, random_points
from trtforge.manifest import parse_manifest
from trtforge.verify.run import NOT_EVALUATED

P0 = (("batch", (1, 1, 1, 1)), ("h", (8, 8, 8, 2)))
P1 = (("batch", (2, 3, 4, 1)), ("h", (8, 12, 16, 2)))


def test_random_points_lie_on_the_grid_between_the_corners():
    points = random_points((P0, P1), 2, seed=0)
    # profile 0 holds one shape, its corners: nothing to draw; profile 1 gets 2 distinct shapes
    assert [label for label, _ in points] == ["p1.shape1", "p1.shape2"]
    corners = [point_values(P1, pt) for pt in POINTS]
    values = [v for _, v in points]
    assert values[0] != values[1]
    for v in values:
        assert 2 <= v["batch"] <= 4 and 8 <= v["h"] <= 16 and v["h"] % 2 == 0 and v not in corners
    assert random_points((P0, P1), 2, seed=0) == points  # seeded: the same every run
    # fewer where the profile holds fewer other shapes: batch 1..3 (corners 1, 2, 3) holds none
    assert random_points(((("batch", (1, 2, 3, 1)),),), 2, seed=0) == []
    assert len(random_points(((("batch", (1, 2, 4, 1)),),), 5, seed=0)) == 1  # only batch 3


def test_verify_shapes_defaults_to_2_and_0_turns_it_off():
    text = '[modules.m]\nfactory = "x:make"\ninputs.x = { shape = ["b", 4] }\ndims.b = { min = 1, opt = 2, max = 8 }\n'
    path = Path("/nonexistent/engines.toml")
    assert parse_manifest(text, path).module("m").verify.shapes == 2
    assert parse_manifest(text + "verify.shapes = 0\n", path).module("m").verify.shapes == 0


MODEL = """
import torch
import torch.nn.functional as F
from torch import nn


class Unshuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(12, 4, 1)

    def forward(self, x):
        return self.conv(F.pixel_unshuffle(x, 2))


def make():
    torch.manual_seed(0)
    return Unshuffle()
"""

MANIFEST = """
[modules.u]
factory = "unshuffle:make"
inputs.x = { shape = ["batch", 3, "h", 8] }
profiles = [
    { batch = 1, h = { min = 8, opt = 8, max = 8, multiple_of = 2 } },
    { batch = { min = 2, opt = 3, max = 4 }, h = { min = 8, opt = 12, max = 16, multiple_of = 2 } },
]
"""


@pytest.mark.slow
def test_every_profile_is_checked_between_its_corners_and_bundled(tmp_path):
    (tmp_path / "unshuffle.py").write_text(MODEL)
    (tmp_path / "engines.toml").write_text(MANIFEST)
    r = run_cli("build", "--json", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    (m,) = json.loads(r.stdout)["modules"]
    verify = m["stages"]["verify"]["meta"]
    corners = [f"p{i}.{pt}" for i in (0, 1) for pt in POINTS]
    assert verify["input_sets"] == ["example", *corners, "p1.shape1", "p1.shape2"]
    assert (
        verify["checks"]["precision_rules"]["status"] == "ok" and verify["checks"]["precision_rules"]["input_sets"] == 9
    )
    for stage in ("export", "graph_passes"):  # the final check passed (they name a failing stage)
        assert verify["checks"][stage]["reason"] == NOT_EVALUATED
    folder = next(p for p in (tmp_path / "engines").iterdir() if p.is_dir())
    for k in (1, 2):
        with np.load(folder / f"u.inputs.p1.shape{k}.npz") as z:
            b, _, h, _ = z["x"].shape
        assert 2 <= b <= 4 and 8 <= h <= 16 and h % 2 == 0
    # a polygraphy pair per profile, each holding only the sets its profile runs
    from polygraphy.json import load_json

    p0 = load_json(str(folder / "u.polygraphy-inputs.json"))
    p1 = load_json(str(folder / "u.polygraphy-inputs.p1.json"))
    assert (folder / "u.polygraphy-reference.p1.json").exists()
    assert {f["x"].shape[0] for f in p0} == {1} and all(2 <= f["x"].shape[0] <= 4 for f in p1)
    assert len(p0) + len(p1) == 9
