"""The per-target timing cache: kept out of the build key, carried by each build record, its
digest in the sidecar; the next build of the target starts from it, on this runner or (through
the remote cache) on another. Real TensorRT-RTX CPU builds (its builder config has the same
timing-cache API as TensorRT's)."""

from __future__ import annotations

import json

import pytest

from tests.cache.conftest import set_manifest, states
from tests.farm.conftest import farm_build, remote_of

pytestmark = pytest.mark.slow


def _timing(report) -> dict:
    return report["modules"][0]["stages"]["build"]["meta"]["timing_cache"]


def _sidecar(root) -> dict:
    (side,) = (root / "engines").rglob("mlp.json")
    return json.loads(side.read_text())


TARGET = """
[targets.consumer]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.6"]
"""


def _targeted(root, width):
    """A declared target: the timing cache is kept for [targets.NAME] targets."""
    set_manifest(root, width=width)
    with open(root / "engines.toml", "a") as f:
        f.write(TARGET)


def test_rebuild_after_a_change_starts_from_the_last_timing_cache(remote, runners):
    a, b = runners(2)
    _targeted(a, 16)
    proc, first = farm_build(a, remote)
    assert proc.returncode == 0, proc.stderr[-2000:]
    t1 = _timing(first)
    assert t1["seeded_from"] is None and t1["bytes"] > 0
    assert _sidecar(a)["timing_cache"] == t1["digest"]
    assert {"timing", "release"} <= set(remote_of(first, "consumer/mlp")["uploaded"])  # the target's pointers, shared

    _targeted(a, 20)  # a small model change: a new build key
    proc, second = farm_build(a, remote)
    assert proc.returncode == 0 and states(second, "consumer/mlp")["build"] == "ok"
    assert _timing(second)["seeded_from"] == t1["digest"]
    assert second["modules"][0]["stages"]["build"]["key"] != first["modules"][0]["stages"]["build"]["key"]

    # another runner, its own empty cache, a change of its own: seeded from the shared cache
    _targeted(b, 24)
    proc, third = farm_build(b, remote)
    assert proc.returncode == 0 and states(third, "consumer/mlp")["build"] == "ok"
    assert _timing(third)["seeded_from"] == _timing(second)["digest"]
    assert "timing" in remote_of(third, "consumer/mlp")["fetched"]
    assert _sidecar(b)["timing_cache"] == _timing(third)["digest"]
