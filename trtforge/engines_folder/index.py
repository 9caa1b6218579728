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

from trtforge.artifacts import VERSION
from trtforge.cache.atomic import atomic_write_bytes

INDEX = "index.json"
FORMAT = 1
# written by every build at the top of the output folder; owned by name
REPORTS = ("REPORT.md", "report.json", "report.html")
SIG = "index.json.sig"  # the signature of index.json, when a signing key is configured (signing.py)
TOP_FILES = (INDEX, *REPORTS, SIG)


def empty() -> dict:
    return {"format": FORMAT, "trtforge": VERSION, "modules": {}, "pending": {}}


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
    return problem(doc) is None


def problem(doc) -> str | None:
    """Why `doc` is not an index trtforge wrote (None when it is one)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return "not a trtforge index"
    mods, pending = doc.get("modules"), doc.get("pending")
    if not isinstance(mods, dict) or not isinstance(pending, dict):
        return "not a trtforge index"
    for entry in mods.values():
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
            return "not a trtforge index"
        paths = [entry.get("sidecar"), *entry["files"]]
        paths += [v for v in entry["files"].values() if not isinstance(v, str)]
        bad = next((p for p in paths if not safe_rel(p)), None)
        if bad is not None:
            return f"{bad!r} is not a path inside the folder"
    pipes = doc.get("pipelines", {})  # [pipelines.NAME]: inputs and references (pipelines/published.py)
    if not isinstance(pipes, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("files"), dict) for e in pipes.values()
    ):
        return "not a trtforge index"
    bad = next((p for e in pipes.values() for p in [e.get("sidecar"), *e["files"]] if not safe_rel(p)), None)
    if bad is not None:
        return f"{bad!r} is not a path inside the folder"
    for paths in pending.values():
        if not isinstance(paths, list):
            return "not a trtforge index"
        bad = next((p for p in paths if not safe_rel(p)), None)
        if bad is not None:
            return f"{bad!r} is not a path inside the folder"
    return None


def save(out_dir: Path, doc: dict) -> None:
    doc = {**doc, "trtforge": VERSION}
    atomic_write_bytes(out_dir / INDEX, json.dumps(doc, indent=1, sort_keys=True).encode())


def owned(doc: dict | None) -> set[str]:
    """Every path (relative to the output folder) the index says trtforge wrote."""
    if doc is None:
        return set()
    names = {f for e in [*doc["modules"].values(), *doc.get("pipelines", {}).values()] for f in e["files"]}
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


def adopt_legacy(out_dir: Path, names: set[str] | None = None) -> dict | None:
    """A folder published before index.json existed, or whose index is damaged (truncated by a
    full disk, edited): every <target>/<module>.json sidecar whose files are all beside it with
    their digests is trtforge's, and is written into a new index so it can be withdrawn like any
    other; what no sidecar vouches for stays foreign (refused). `names`: the entry names the
    manifest publishes ("<target>/<module>" with [targets]). None when there is a valid index or
    nothing to adopt. (A damaged index once made every later build refuse the folder for good.)"""
    from trtforge.cache import digest_file

    if (out_dir / INDEX).exists() and load(out_dir) is not None:
        return None
    doc = empty()
    for side in sorted(out_dir.glob("*/*.json")):
        try:
            meta = json.loads(side.read_bytes())
            files = {f"{side.parent.name}/{f}": d for f, d in meta["files"].items()}
            if meta["module"] != side.stem or not all(
                safe_rel(r)
                and "/" not in r.split("/", 1)[1]
                and inside(out_dir, r) is not None
                and (out_dir / r).is_file()
                and digest_file(out_dir / r, trust_memo=False) == d
                for r, d in files.items()
            ):
                continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        rel = f"{side.parent.name}/{side.name}"
        name = f"{side.parent.name}/{side.stem}" if f"{side.parent.name}/{side.stem}" in (names or ()) else side.stem
        if name in doc["modules"]:
            continue  # two folders vouch for one module: neither is adopted over the other
        doc["modules"][name] = {"sidecar": rel, "files": {**files, rel: digest_file(side, trust_memo=False)}}
    if not doc["modules"]:
        return None
    save(out_dir, doc)
    return doc


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
