"""engines/index.json: exactly what trtforge published in the output folder, with digests.

    {"format": 1, "trtforge": "0.1.0",
     "modules": {"vit": {"sidecar": "rtx-sm80/vit.json", "files": {"rtx-sm80/vit.engine": "<sha256>", ...}}},
     "pending": {"vit": ["rtx-sm80/vit.engine", ...]}}

Paths are relative to the output folder. `pending` names files trtforge may be writing or
deleting right now: a publish or withdrawal records them here first and drops them last, so a
SIGKILL at any point leaves an index that either describes the files or says the folder is mid-
publish (and `trtforge verify` fails on it). trtforge deletes only files the index names, and
refuses an output folder holding any other file unless told to allow foreign files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from trtforge import __version__
from trtforge.cache.store import atomic_write_bytes

INDEX = "index.json"
FORMAT = 1
# written by every build at the top of the output folder; owned by name
REPORTS = ("REPORT.md", "report.json", "report.html")
TOP_FILES = (INDEX, *REPORTS)


def empty() -> dict:
    return {"format": FORMAT, "trtforge": __version__, "modules": {}, "pending": {}}


def load(out_dir: Path) -> dict | None:
    """The index, or None when there is none or it is not one trtforge wrote (a damaged index
    owns nothing: its files are then foreign, never deleted)."""
    try:
        doc = json.loads((out_dir / INDEX).read_bytes())
    except (OSError, ValueError):
        return None
    if not valid(doc):
        return None
    return doc


def safe_rel(rel) -> bool:
    """A plain relative path below the folder: no absolute path, no '..', no empty part."""
    if not isinstance(rel, str) or not rel or "\\" in rel or rel.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def inside(out_dir: Path, rel: str) -> Path | None:
    """out_dir/rel when no part of the way there is a symlink (a planted link never redirects a
    delete or a write), else None."""
    if not safe_rel(rel):
        return None
    path = out_dir
    for part in rel.split("/"):
        path = path / part
        if path.is_symlink():
            return None
    return path


def valid(doc) -> bool:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return False
    mods, pending = doc.get("modules"), doc.get("pending")
    if not isinstance(mods, dict) or not isinstance(pending, dict):
        return False
    for entry in mods.values():
        if (not isinstance(entry, dict) or not safe_rel(entry.get("sidecar"))
                or not isinstance(entry.get("files"), dict)
                or not all(safe_rel(k) and isinstance(v, str) for k, v in entry["files"].items())):
            return False
    return all(isinstance(v, list) and all(safe_rel(p) for p in v) for v in pending.values())


def save(out_dir: Path, doc: dict) -> None:
    doc = {**doc, "trtforge": __version__}
    atomic_write_bytes(out_dir / INDEX, json.dumps(doc, indent=1, sort_keys=True).encode())


def owned(doc: dict | None) -> set[str]:
    """Every path (relative to the output folder) the index says trtforge wrote."""
    if doc is None:
        return set()
    names = {f for e in doc["modules"].values() for f in e["files"]}
    return names | {f for paths in doc["pending"].values() for f in paths}


def is_temp(name: str) -> bool:
    """A temp file of trtforge's atomic writes (.<final name>.<owner>.<random>.tmp)."""
    return name.startswith(".") and name.endswith(".tmp")


def listing(out_dir: Path) -> list[str]:
    """Every non-folder entry under out_dir, relative, symlinks not followed."""
    out = []
    for dirpath, dirs, files in os.walk(out_dir):
        rel = Path(dirpath).relative_to(out_dir)
        out += [(rel / f).as_posix() for f in files]
        # a symlink to a folder is an entry of its own, never walked into
        out += [(rel / d).as_posix() for d in dirs if os.path.islink(os.path.join(dirpath, d))]
    return sorted(out)


def foreign(out_dir: Path, doc: dict | None) -> list[str]:
    """Files in the output folder that trtforge did not write (per its index)."""
    mine = owned(doc) | set(TOP_FILES)
    return [p for p in listing(out_dir) if p not in mine and not is_temp(p.rsplit("/", 1)[-1])]


@contextlib.contextmanager
def locked(out_dir: Path):
    """One writer of the index at a time (--jobs workers, parallel builds): flock on the folder
    itself, so no lock file ever sits among the published files."""
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
