"""A flipped byte or a truncated blob is a miss: detected on read, forgotten, rebuilt, reported."""

from __future__ import annotations

import os

import pytest

from tests.cache.conftest import assert_consistent, blob, build, record_of, sha256, states
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # real processes building real engines


def _damage(path, how: str) -> None:
    os.chmod(path, 0o644)  # blobs are stored read-only
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))


def test_flipped_engine_blob_is_rebuilt_and_reported(built_project):
    cache = built_project / ".trtforge-cache"
    engine_digest = record_of(cache, "build")["outputs"]["model.engine"]["digest"]
    _damage(blob(cache, engine_digest), "flip")

    proc, report = build(built_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "corrupt cache entry forgotten and rebuilt" in proc.stderr
    assert states(report)["build"] == "ok" and states(report)["export"] == "cached"
    published = next((built_project / "engines").glob("*/mlp.engine"))
    assert sha256(published) == record_of(cache, "build")["outputs"]["model.engine"]["digest"]
    assert_consistent(built_project)


def test_truncated_export_blob_is_rebuilt(built_project):
    cache = built_project / ".trtforge-cache"
    digest = record_of(cache, "export")["outputs"]["caller_reference.npz"]["digest"]
    _damage(blob(cache, digest), "truncate")

    proc, report = build(built_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "corrupt" in proc.stderr
    assert states(report)["export"] == "ok"
    assert_consistent(built_project)


def test_cache_verify_rehashes_despite_unchanged_stat(built_project):
    """Bit rot keeps size and mtime: only `cache verify` (which ignores the stat memo) finds it."""
    cache = built_project / ".trtforge-cache"
    path = blob(cache, record_of(cache, "build")["outputs"]["model.engine"]["digest"])
    st = path.stat()
    _damage(path, "flip")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    proc = run_cli("cache", "verify", cwd=built_project)
    assert proc.returncode == 3 and "corrupt blob" in proc.stdout, proc.stdout + proc.stderr
    assert not path.exists()
    proc, report = build(built_project)
    assert proc.returncode == 0 and states(report)["build"] == "ok", proc.stderr[-2000:]
    assert run_cli("cache", "verify", cwd=built_project).returncode == 0
