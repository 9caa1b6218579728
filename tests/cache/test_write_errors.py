"""A read-only cache and a full disk end in one line, exit 2, and lose nothing.

The full disk is the test hook TRTFORGE_TEST_ENOSPC_AT (trtforge/cache/testhooks.py): an
OSError(ENOSPC) raised exactly where a write would fail, since CI machines cannot mount a tiny tmpfs."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.cache.conftest import TRTFORGE, assert_consistent, build, records, set_manifest, states

pytestmark = pytest.mark.slow  # real processes building real engines

ENOSPC = "TRTFORGE_TEST_ENOSPC_AT"


def _one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("trtforge: error:")]
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def _run_with_read_only_cache(args, proj, cache):
    """The CLI with `cache` read-only: by permission bits for a normal user; as root (which ignores
    them) by a read-only bind mount in a private mount namespace, as a restored CI cache would be."""
    if os.geteuid() != 0:
        for dirpath, _, _ in os.walk(cache):
            os.chmod(dirpath, 0o555)
        try:
            return subprocess.run([TRTFORGE, *args], cwd=proj, capture_output=True, text=True, timeout=120)
        finally:
            for dirpath, _, _ in os.walk(cache):
                os.chmod(dirpath, 0o755)
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(cache), TRTFORGE, *args],
        cwd=proj,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        pytest.skip(f"cannot mount read-only here: {proc.stderr.strip()[:200]}")
    return proc


def test_read_only_cache_is_one_line_exit_2(tiny_project):
    cache = tiny_project / ".trtforge-cache"
    for sub in ("blobs", "actions", "tmp"):
        (cache / sub).mkdir(parents=True)
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    proc = _run_with_read_only_cache(["build", "engines.toml"], tiny_project, cache)
    _one_line_error(proc, "read-only", str(cache), "--cache-dir")
    proc = _run_with_read_only_cache(["cache", "gc", "--max-size", "1M"], tiny_project, cache)
    _one_line_error(proc, "read-only")
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before


def test_disk_full_while_storing_keeps_everything(built_project):
    """The cache keeps every finished stage; the module failed, so its old engine (built from
    the previous manifest) is withdrawn, not left to pass for the current one."""
    assert list((built_project / "engines").glob("*/mlp.engine"))
    n_records = len(records(built_project / ".trtforge-cache"))

    set_manifest(built_project, width=24)
    proc, _ = build(built_project, env={ENOSPC: "put:build"})
    _one_line_error(proc, "No space left on device")
    assert list((built_project / "engines").glob("*/*")) == []
    assert len(records(built_project / ".trtforge-cache")) == n_records + 3  # export..precision stored
    assert_consistent(built_project)

    proc, report = build(built_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert states(report)["precision_rules"] == "cached" and states(report)["build"] == "ok"


def test_disk_full_while_publishing_keeps_the_cache(republish_project):
    """Every stage a cache hit (width 24 is in the cache), so the build goes straight to
    publishing the new engine, where the disk is full."""
    set_manifest(republish_project, width=24)
    proc, _ = build(republish_project, env={ENOSPC: "atomic:mlp.engine"})
    _one_line_error(proc, "No space left on device", "mlp.engine")
    assert not list((republish_project / "engines").glob("*/.mlp.engine.*")), "temp file left behind"
    assert_consistent(republish_project)
    proc, report = build(republish_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(states(report).values()) == {"cached"}
