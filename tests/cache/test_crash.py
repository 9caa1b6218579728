"""SIGKILL at every step of a real build (test hook TRTFORGE_TEST_KILL_AT, trtforge/cache/testhooks.py)
and at steps drawn at random: the next run completes, reuses what was finished, and no partial file ever
sits under a final name."""

from __future__ import annotations

import os
import random
import signal

import pytest

from tests.cache.conftest import STAGES, assert_consistent, build, set_manifest, stages_recorded, states
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # real processes building real engines

KILL = "TRTFORGE_TEST_KILL_AT"


def test_kill_inside_each_stage_then_resume_reuses_finished_stages(tiny_project):
    cache = tiny_project / ".trtforge-cache"
    for i, stage in enumerate(STAGES):
        # killed after its outputs are written (work folder), and after its blobs are stored but
        # before its record: both leave the stage unfinished, everything upstream finished
        for point in (f"stage:{stage}", f"put:{stage}") if stage in ("export", "build") else (f"stage:{stage}",):
            proc, _ = build(tiny_project, env={KILL: point})
            assert proc.returncode == -signal.SIGKILL, (point, proc.stderr[-2000:])
            assert stages_recorded(cache) == set(STAGES[:i]), point
            assert_consistent(tiny_project)
    proc, report = build(tiny_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert states(report) == {s: "cached" for s in STAGES[:-1]} | {"verify": "ok"}
    assert list((cache / "tmp").iterdir()) == [], "work folders of killed runs were not swept"
    assert_consistent(tiny_project)


def test_kill_while_publishing_then_resume(republish_project):
    """Every stage of width 24 is a cache hit: the build goes straight to publishing."""
    set_manifest(republish_project, width=24)  # a new engine replaces the published one
    target = next((republish_project / "engines").glob("*/"))
    for point in ("atomic:mlp.engine", "publish", "atomic:mlp.json"):
        proc, _ = build(republish_project, env={KILL: point})
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr[-2000:])
        assert_consistent(republish_project)
        if point == "atomic:mlp.engine":
            assert any(f.name.startswith(".mlp.engine.") for f in target.iterdir()), "temp not in place"
            assert not (target / "mlp.json").exists(), "old sidecar left beside a changing engine"
    proc, report = build(republish_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(states(report).values()) == {"cached"}
    assert sorted(f.name for f in target.iterdir()) == [
        "mlp.engine",
        "mlp.inputs.npz",
        "mlp.json",
        "mlp.polygraphy-inputs.json",
        "mlp.polygraphy-reference.json",
        "mlp.reference.npz",
    ], "stale temps not swept"
    assert_consistent(republish_project)


# every step of the publish window, in order: the first index write (files untouched yet), the
# index naming the module pending, each copied file, engine copied but no sidecar, the sidecar
# written but the index not yet final
PUBLISH_WINDOW = (
    "atomic:index.json",
    "publish:begin",
    "atomic:mlp.engine",
    "atomic:mlp.reference.npz",
    "publish",
    "atomic:mlp.json",
    "publish:sidecar",
)


@pytest.mark.parametrize("point", PUBLISH_WINDOW)
def test_kill_in_the_publish_window_never_passes_verify_with_a_stale_or_unvouched_engine(republish_project, point):
    """After a SIGKILL anywhere in publish, `trtforge verify` either fails (exit 3) or the folder
    is exactly the old, consistent one; the next build repairs it."""
    set_manifest(republish_project, width=24)
    index = republish_project / "engines" / "index.json"
    old = index.read_text() if index.exists() else None
    proc, _ = build(republish_project, env={KILL: point})
    assert proc.returncode == -signal.SIGKILL, (point, proc.stderr[-2000:])
    r = run_cli("verify", "engines", cwd=republish_project)
    if point == "atomic:index.json":  # killed before anything changed: the old folder, intact,
        # with the new index's temp beside it, which verify names in a note (trtforge's own leftover)
        assert index.read_text() == old
        assert r.returncode == 0 and "mlp: failed" not in r.stdout, r.stdout + r.stderr
        assert "note: engines/.index.json." in r.stderr
    else:
        assert r.returncode == 3, (point, r.stdout + r.stderr)
        assert "mlp: failed: its publish was interrupted" in r.stdout
    assert_consistent(republish_project)
    proc, _ = build(republish_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = run_cli("verify", "engines", cwd=republish_project)
    assert r.returncode == 0, r.stdout + r.stderr


def test_kills_at_random_points_in_random_builds(tiny_project):
    """SIGKILLs at points drawn at random from every named step (inside a stage's process, after
    its work, between its blobs and its record, before its lookup, across the publish window), in
    builds of widths drawn at random, so kills land on half-finished caches of other widths too.
    A drawn point a build never reaches (its stage is a cache hit) lets that build finish. After
    each: consistent; at the end, one build completes and the next runs nothing.
    TRTFORGE_RANDOM_KILLS=N for more (8 keeps CI short), TRTFORGE_RANDOM_SEED to vary."""
    rng = random.Random(int(os.environ.get("TRTFORGE_RANDOM_SEED", "5")))
    points = [f"{kind}:{stage}" for stage in STAGES for kind in ("run", "work", "stage", "put", "before")]
    points += list(PUBLISH_WINDOW)
    killed = 0
    for i in range(int(os.environ.get("TRTFORGE_RANDOM_KILLS", "8"))):
        if i % 2:
            set_manifest(tiny_project, width=rng.choice((8, 12, 16, 20)))
        point = rng.choice(points)
        proc, _ = build(tiny_project, env={KILL: point})
        killed += proc.returncode != 0
        assert proc.returncode in (0, 2, -signal.SIGKILL), (point, proc.stderr[-2000:])
        assert_consistent(tiny_project)
    assert killed, "no drawn point was reached: the draw tests nothing"
    proc, report = build(tiny_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_consistent(tiny_project)
    proc, report = build(tiny_project)
    assert set(states(report).values()) == {"cached"}
