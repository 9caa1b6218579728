"""`trtforge cache gc | ls | verify`, and a read-only shared cache layered under a local one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.cache.conftest import STAGES, assert_consistent, blob, build, popen_build, records, set_manifest, states
from tests.conftest import TRTFORGE, Pause, run_cli

pytestmark = pytest.mark.slow  # real processes building real engines


def _age(cache, seconds: float) -> None:
    """Backdate every record by `seconds` (records carry their creation time)."""
    for path in (cache / "actions").glob("*/*.json"):
        if not path.name.endswith(".key.json"):
            doc = json.loads(path.read_text())
            doc["created"] -= seconds
            path.write_text(json.dumps(doc))


def _blob_bytes(cache) -> int:
    return sum(p.stat().st_size for p in (cache / "blobs").glob("*/*") if p.is_file())


def test_gc_older_than_keeps_the_last_build_and_max_size_bounds_the_cache(built_project, tmp_path):
    cache = built_project / ".trtforge-cache"
    old = {r["key"] for r in records(cache)}
    _age(cache, 3 * 86400)
    set_manifest(built_project, width=24)
    assert build(built_project)[0].returncode == 0
    new = {r["key"] for r in records(cache)} - old

    proc = run_cli("cache", "gc", "--older-than", "2d", cwd=built_project)
    assert proc.returncode == 0, proc.stderr
    assert "removed 5 record(s)" in proc.stdout, proc.stdout
    assert {r["key"] for r in records(cache)} == new
    assert_consistent(built_project)
    proc, report = build(built_project)  # the current build is intact
    assert set(states(report).values()) == {"cached"}
    # a copy of this one-build cache for the size bound below (no second build needed)
    other = tmp_path / "other"
    shutil.copytree(cache, other / ".trtforge-cache", symlinks=True)

    # the published build's records are pinned (issue 28): every other record goes, they stay
    proc = run_cli("cache", "gc", "--max-size", "1K", cwd=built_project)
    assert proc.returncode == 0, proc.stderr
    assert {r["key"] for r in records(cache)} == new and len(list((cache / "actions").glob("*/*.key.json"))) == 5
    for pin in (cache / "index").glob("*/*@*.json"):  # withdrawn: nothing published pins them now
        pin.unlink()
    proc = run_cli("cache", "gc", "--max-size", "1K", cwd=built_project)
    assert records(cache) == [] and _blob_bytes(cache) == 0
    assert not list((cache / "actions").glob("*/*.key.json"))

    cache = other / ".trtforge-cache"
    for pin in (cache / "index").glob("*/*@*.json"):
        pin.unlink()
    total = _blob_bytes(cache)
    proc = run_cli("cache", "gc", "--cache-dir", str(cache), "--max-size", str(total - 1), cwd=built_project)
    assert proc.returncode == 0, proc.stderr
    assert 0 < _blob_bytes(cache) <= total - 1
    remaining = {r["stage"] for r in records(cache)}
    assert "export" not in remaining and "verify" in remaining  # oldest first
    assert_consistent(other)


def test_gc_never_follows_links_out_of_the_cache(built_project, tmp_path):
    cache = built_project / ".trtforge-cache"
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ("0" * 64)
    victim.write_bytes(b"precious, not in the cache")
    (cache / "blobs" / "00").mkdir(exist_ok=True)
    os.symlink(victim, cache / "blobs" / "00" / ("0" * 64))  # a linked file
    os.symlink(outside, cache / "blobs" / "zz")  # a linked folder
    os.symlink(outside, cache / "actions" / "zz")
    for args in (["gc", "--max-size", "0"], ["gc", "--older-than", "0s"], ["verify"]):
        proc = run_cli("cache", *args, cwd=built_project)
        assert proc.returncode in (0, 3), proc.stderr
        assert victim.read_bytes() == b"precious, not in the cache", args
        assert sorted(p.name for p in outside.iterdir()) == ["0" * 64]


def test_cache_ls_lists_records(built_project):
    proc = run_cli("cache", "ls", cwd=built_project)
    assert proc.returncode == 0
    header, *rows, total = proc.stdout.splitlines()
    assert header.split() == ["KEY", "MODULE", "STAGE", "SIZE", "AGE"]
    assert sorted(line.split()[2] for line in rows) == sorted(STAGES)
    assert total.startswith(f"{len(STAGES)} record(s), ")


def test_read_only_shared_cache_under_empty_local_does_no_stage_work(built_project, tmp_path):
    shared = tmp_path / "shared"
    shutil.copytree(
        built_project / ".trtforge-cache",
        shared,
        symlinks=True,
        ignore=shutil.ignore_patterns("statmemo", "views", "index"),
    )
    for dirpath, _, files in os.walk(shared):  # as a CI system restores it: read-only
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o444)
        os.chmod(dirpath, 0o555)
    shutil.rmtree(built_project / ".trtforge-cache")
    shutil.rmtree(built_project / "engines")
    try:
        proc, report = build(built_project, env={"TRTFORGE_SHARED_CACHE": str(shared)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert set(states(report).values()) == {"cached"}, states(report)  # no stage ran
        assert (next((built_project / "engines").glob("*/mlp.engine"))).is_file()
        assert_consistent(built_project)
        # the shared layer is only read: its blobs are still there
        rec = [r for r in records(built_project / ".trtforge-cache") if r["stage"] == "build"][0]
        shared_engine = blob(shared, rec["outputs"]["model.engine"]["digest"])
        assert shared_engine.is_file()

        # a corrupt blob in the shared layer: detected, rebuilt locally, the shared layer untouched
        shutil.rmtree(built_project / ".trtforge-cache")
        os.chmod(shared_engine.parent, 0o755)
        os.chmod(shared_engine, 0o644)
        shared_engine.write_bytes(b"garbage" + shared_engine.read_bytes()[7:])
        os.chmod(shared_engine, 0o444)
        before = shared_engine.read_bytes()
        proc, report = build(built_project, env={"TRTFORGE_SHARED_CACHE": str(shared)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "corrupt" in proc.stderr and states(report)["build"] == "ok"
        assert shared_engine.read_bytes() == before
        assert_consistent(built_project)
    finally:
        for dirpath, _, _ in os.walk(shared):
            os.chmod(dirpath, 0o755)


def test_gc_while_a_build_runs_waits_and_breaks_nothing(tiny_project, tmp_path):
    """gc started while the build stage runs (the build stopped inside TensorRT's builder at a
    named checkpoint) waits for the build, which finishes with every stage built."""
    pause = Pause(tmp_path / "pause", "work:build")
    proc = popen_build(tiny_project, env=pause.env)
    try:
        pause.wait(proc)
        gc = subprocess.Popen(
            [TRTFORGE, "cache", "gc", "--max-size", "0"],
            cwd=tiny_project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        pause.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert set(states(json.loads(out)).values()) == {"ok"}
    gc_out, gc_err = gc.communicate(timeout=120)
    assert gc.returncode == 0, gc_err
    # it ran after the build: max-size 0 dropped every record but the 5 pinned behind the published
    # engine (the build pins them only after publishing, so a gc that ran mid-build dropped some)
    assert len(records(tiny_project / ".trtforge-cache")) == 5 and "removed 0 record(s)" in gc_out
