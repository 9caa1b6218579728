"""The installed-file index behind code keys (trtforge/cache/imports.py) reads RECORD files as CSV
text: it must name exactly the files, owners and hashes importlib.metadata's own parse names (the
keys of every cached export depend on it), on this venv's real distributions."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os

import numpy

from trtforge.cache import imports


def _reference() -> dict:
    """The same index through importlib.metadata's `files` (a path object per row: the slow way)."""
    owners, seen = {}, set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or name.lower() in seen:
            continue
        seen.add(name.lower())
        files = dist.files or []
        record = next((str(f) for f in files if f.name == "RECORD" and f.parent.name.endswith(".dist-info")), None)
        if record is None:
            continue
        location, version = os.path.normpath(str(dist.locate_file(""))), dist.version
        for f in files:
            sha = None
            if f.hash is not None and f.hash.mode == "sha256":
                v = f.hash.value
                sha = base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)).hex()
            path = os.path.normpath(os.path.join(location, str(f)))
            owners.setdefault(path, (name, version, location, record, str(f), sha))
    return owners


def test_record_index_matches_importlib_metadata():
    fast = {k: (*v[:5], imports._sha256_hex(v[5])) for k, v in imports._installed().items()}
    assert fast == _reference()


def test_snapshot_names_a_loaded_installed_file_with_its_true_digest(tmp_path):
    deps = imports.snapshot(tmp_path)
    entry = deps["dists"]["numpy"]
    rel = os.path.relpath(numpy.__file__, entry["location"])
    with open(numpy.__file__, "rb") as f:
        assert entry["files"][rel] == hashlib.sha256(f.read()).hexdigest()
