"""Timing caches: TensorRT targets keep one per target (kept out of the build key, carried by each
build record, the next build of the target starts from it, on this runner or through the remote
cache on another); TensorRT-RTX targets take none (an ahead-of-time build times nothing, and the
TensorRT-RTX documentation deprecates the builder's timing cache). At 7fe7866 every TensorRT-RTX
build created, stored and uploaded one."""

from __future__ import annotations

import json

import pytest

from tests.cache.conftest import set_manifest
from tests.farm.conftest import farm_build, remote_of
from trtforge.builder.timing import FILE
from trtforge.cache import Store
from trtforge.driver import timing
from trtforge.driver.stages import stage_table
from trtforge.manifest.targets import parse_targets

TARGETS = {
    "consumer": {"backend": "tensorrt-rtx", "rtx_compute_capabilities": ["8.6"]},
    "h100": {"backend": "tensorrt", "gpu": "H100"},
    "h100-cold": {"backend": "tensorrt", "gpu": "H100", "timing_cache": False},
}


def test_only_tensorrt_targets_keep_a_timing_cache():
    by_name = {t.name: t for t in parse_targets(TARGETS, "targets")}
    build = {name: stage_table(target=t)[3].stage for name, t in by_name.items()}
    assert build["h100"].timing_cache and build["h100"].target_name == "h100"
    assert not build["consumer"].timing_cache and not build["h100-cold"].timing_cache


def test_a_build_starts_from_the_targets_newest_timing_cache(tmp_path):
    """The pointer per target (stage `timing`) follows each build record's timing cache."""
    store = Store(tmp_path / "cache")
    assert timing.seed(store, "h100") is None
    built = []
    for content in (b"first tactics", b"more tactics"):
        with store.workdir("build") as wd:
            (wd / FILE).write_bytes(content)
            (wd / "model.engine").write_bytes(b"engine " + content)
            built.append(store.put(f"{len(built):064x}", "build", {"stage": "build"}, wd, {}))
        timing.remember(store, "h100", built[-1])
        assert timing.seed(store, "h100").read_bytes() == content
    assert timing.seed(store, "other") is None


TARGET = """
[targets.consumer]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.6"]
"""


@pytest.mark.slow
def test_tensorrt_rtx_targets_build_without_a_timing_cache(remote, runners):
    (a,) = runners(1)
    set_manifest(a, width=16)
    with open(a / "engines.toml", "a") as f:
        f.write(TARGET)
    proc, report = farm_build(a, remote)
    assert proc.returncode == 0, proc.stderr[-2000:]
    build = report["modules"][0]["stages"]["build"]
    assert build["meta"]["timing_cache"] is None
    cache = a / ".trtforge-cache"
    (key_file,) = [p for p in cache.glob("actions/*/*.json") if p.stem == build["key"]]
    assert FILE not in json.loads(key_file.read_text()[key_file.read_text().index("{") :])["outputs"]
    assert "timing" not in remote_of(report, "consumer/mlp")["uploaded"]  # no pointer shared
    (side,) = (a / "engines").rglob("mlp.json")
    assert json.loads(side.read_text())["timing_cache"] is None
