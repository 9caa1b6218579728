"""A flipped byte or a truncated blob is a miss: detected on read, forgotten, rebuilt, reported."""

from __future__ import annotations

import os

from tests.cache.conftest import assert_consistent, blob, build, record_of, sha256, states
from tests.conftest import run_cli


def _damage(path, how: str) -> None:
    os.chmod(path, 0o644)  # blobs are stored read-only
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))


def test_flipped_engine_blob_is_rebuilt_and_reported(tiny_project):
    proc, _ = build(tiny_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cache = tiny_project / ".trtforge-cache"
    engine_digest = record_of(cache, "build")["outputs"]["model.engine"]["digest"]
    _damage(blob(cache, engine_digest), "flip")

    proc, report = build(tiny_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "corrupt cache entry forgotten and rebuilt" in proc.stderr
    assert states(report)["build"] == "ok" and states(report)["export"] == "cached"
    published = next((tiny_project / "engines").glob("*/mlp.engine"))
    assert sha256(published) == record_of(cache, "build")["outputs"]["model.engine"]["digest"]
    assert_consistent(tiny_project)


def test_truncated_export_blob_is_rebuilt(tiny_project):
    proc, _ = build(tiny_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cache = tiny_project / ".trtforge-cache"
    digest = record_of(cache, "export")["outputs"]["caller_reference.npz"]["digest"]
    _damage(blob(cache, digest), "truncate")

    proc, report = build(tiny_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "corrupt" in proc.stderr
    assert states(report)["export"] == "ok"
    assert_consistent(tiny_project)


def test_cache_verify_rehashes_despite_unchanged_stat(tiny_project):
    """Bit rot keeps size and mtime: only `cache verify` (which ignores the stat memo) finds it."""
    proc, _ = build(tiny_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cache = tiny_project / ".trtforge-cache"
    path = blob(cache, record_of(cache, "build")["outputs"]["model.engine"]["digest"])
    st = path.stat()
    _damage(path, "flip")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    proc = run_cli("cache", "verify", cwd=tiny_project)
    assert proc.returncode == 3 and "corrupt blob" in proc.stdout, proc.stdout + proc.stderr
    assert not path.exists()
    proc, report = build(tiny_project)
    assert proc.returncode == 0 and states(report)["build"] == "ok", proc.stderr[-2000:]
    assert run_cli("cache", "verify", cwd=tiny_project).returncode == 0
