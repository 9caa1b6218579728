"""Issue 13, item 2, done when: a ViT with batch 1..8 (opt 4) and a diffusers UNet with dynamic
latent height/width (32..64) each build ONE engine with their optimization profiles, and every
check (export, passes, precision; the engine where it can run) passes at the min, opt and max of
every profile; a two-profile module gets two TensorRT profiles, each checked at its points."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_cli
from trtforge.verify.run import NOT_EVALUATED

pytestmark = pytest.mark.slow

MANIFEST = """
[modules.vit]
factory = "examples.vit:make_vit"
factory_args = { image = 32, patch = 16, dim = 64, depth = 2, heads = 2 }
inputs.image = { shape = ["batch", 3, 32, 32] }
dims.batch = { min = 1, opt = 4, max = 8 }

[modules.vit2]
factory = "examples.vit:make_vit"
factory_args = { image = 32, patch = 16, dim = 64, depth = 1, heads = 2 }
inputs.image = { shape = ["batch", 3, 32, 32] }
profiles = [{ batch = 1 }, { batch = { min = 2, opt = 4, max = 8 } }]

[modules.unet]
factory = "models:unet"
inputs.sample = { shape = [1, 4, "height", "width"] }
inputs.timestep = { shape = [1], dtype = "int64", range = [0, 999] }
inputs.encoder_hidden_states = { shape = [1, 8, 32] }
# the UNet halves the latent once: torch asks for even sizes
dims.height = { min = 32, opt = 48, max = 64, multiple_of = 2 }
dims.width = { min = 32, opt = 48, max = 64, multiple_of = 2 }
# opset 21 writes GroupNormalization whole: TensorRT-RTX 1.7's Myelin fails (std::bad_alloc) on
# the opset-20 InstanceNormalization + Reshape decomposition once height and width are dynamic
export.opset = 21
"""
POINTS = ["p0.min", "p0.opt", "p0.max"]
EXPECTED = {
    "vit": [{"image": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [8, 3, 32, 32]}}],
    "vit2": [
        {"image": {"min": [1, 3, 32, 32], "opt": [1, 3, 32, 32], "max": [1, 3, 32, 32]}},
        {"image": {"min": [2, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [8, 3, 32, 32]}},
    ],
    "unet": [{"sample": {"min": [1, 4, 32, 32], "opt": [1, 4, 48, 48], "max": [1, 4, 64, 64]}}],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict, str]:
    pytest.importorskip("diffusers")
    root = tmp_path_factory.mktemp("dynamic")
    shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "tests" / "zoo" / "models.py", root / "models.py")
    (root / "engines.toml").write_text(MANIFEST)
    out = run_cli("build", "--json", cwd=root, timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    return root, {m["name"]: m for m in json.loads(out.stdout)["modules"]}, out.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_one_engine_with_its_profiles_verified_at_every_point(built, name):
    root, modules, _ = built
    m = modules[name]
    assert m["ok"], m.get("error")
    build = m["stages"]["build"]["meta"]
    assert build["profiles"] == EXPECTED[name]
    # the builder got them: polygraphy logs each profile it configures, with its shapes
    (view,) = [
        p.parent
        for p in (root / ".trtforge-cache").rglob("build.json")
        if json.loads(p.read_text()).get("profiles") == EXPECTED[name]
    ]
    log = (view / "build.log").read_text()
    assert len(re.findall(r"Profile \d+:", log)) == len(EXPECTED[name])
    for shapes in EXPECTED[name]:
        for inp, pts in shapes.items():
            assert f"{inp} [min={pts['min']}, opt={pts['opt']}, max={pts['max']}]" in log
    # the engine's inputs keep the dynamic axes (-1)
    io = {t["name"]: t["shape"] for t in build["io"]["inputs"]}
    first = next(iter(EXPECTED[name][0]))
    assert -1 in io[first]

    verify = m["stages"]["verify"]["meta"]
    labels = [f"p{i}.{pt}" for i in range(len(EXPECTED[name])) for pt in ("min", "opt", "max")]
    # then verify.shapes (default 2) seeded shapes inside each profile that varies (issue 24)
    labels += [
        f"p{i}.shape{k}"
        for i, shapes in enumerate(EXPECTED[name])
        if any(pts["min"] != pts["max"] for pts in shapes.values())
        for k in (1, 2)
    ]
    assert verify["input_sets"] == ["example", *labels]
    assert verify["profiles"] == EXPECTED[name]
    for stage in ("export", "graph_passes", "precision_rules"):
        check = verify["checks"][stage]
        if stage != "precision_rules" and check["status"] == "not evaluated":  # the final check passed
            assert check["reason"] == NOT_EVALUATED
            continue
        assert check["status"] == "ok", (stage, check)
        assert check["input_sets"] == 1 + len(labels)
    assert verify["checks"]["engine"]["status"] in ("ok", "not run")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_bundle_carries_a_set_per_profile_point_at_its_shape(built, name):
    root, modules, _ = built
    index = json.loads((root / "engines" / "index.json").read_text())
    side_rel = index["modules"][name]["sidecar"]
    side = json.loads((root / "engines" / side_rel).read_text())
    assert side["profiles"] == EXPECTED[name]
    folder = (root / "engines" / side_rel).parent
    for i, shapes in enumerate(EXPECTED[name]):
        for pt in ("min", "opt", "max"):
            assert f"{name}.inputs.p{i}.{pt}.npz" in side["files"]
            assert f"{name}.reference.p{i}.{pt}.npz" in side["files"]
            with np.load(folder / f"{name}.inputs.p{i}.{pt}.npz") as z:
                for inp, pts in shapes.items():
                    assert list(z[inp].shape) == pts[pt]


def test_report_lists_the_profiles_and_verify_on_the_target_reads_them(built):
    root, _, _ = built
    report = (root / "engines" / "REPORT.md").read_text()
    assert "- profile p0: sample [1, 4, 32, 32] / [1, 4, 48, 48] / [1, 4, 64, 64]" in report
    assert "- profile p1: image [2, 3, 32, 32] / [4, 3, 32, 32] / [8, 3, 32, 32]" in report
    out = run_cli("verify", "engines", cwd=root)
    # no GPU here: each engine is "not run" with the reason; the folder itself checks out
    assert out.returncode == 0, out.stdout + out.stderr
    assert "vit2: " in out.stdout
