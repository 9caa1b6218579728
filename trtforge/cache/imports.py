"""Key material for code: what a stage's run actually loaded, not only what the manifest names.

A stage that runs user code (export runs the factory, graph_passes a user pass) cannot know before
it runs which modules that code imports. So, as ccache does for headers, the driver records after
the run every Python module loaded in the process (`snapshot`), stores that set with the record,
and on later runs hashes exactly those files again (`material`) to recompute the key:

- installed distributions: name, version, the digest of their RECORD (the installer's list of
  every installed file with its SHA-256) and the digest of every loaded file that no longer matches
  its RECORD entry (an edit inside site-packages);
- everything else (the project's modules, a folder on PYTHONPATH, editable installs): the digest
  of every loaded source file, wherever it lives;
- the Python version (the standard library is not hashed file by file).

The set is a superset of what the factory needs (every module in the process when the stage
finished): a change there can only cost a rebuild, never a stale artifact. trtforge's own modules
are left out; stage salts version them. Hashing uses the store's stat memo, so an unchanged no-op
build costs one stat per file (about 2,000 files for torch, a few ms).
"""

from __future__ import annotations

import base64
import csv
import functools
import os
import platform
import sys
import sysconfig
from pathlib import Path, PurePosixPath

from trtforge.cache.keys import digest_many

_PKG_DIR = str(Path(__file__).resolve().parent.parent)  # trtforge/


def module_files(modname: str, root: Path) -> list[Path]:
    """The source file of `modname` and the `__init__.py` of each package above it, found on the
    manifest's folder and sys.path without importing anything (a no-op build imports nothing)."""
    parts = modname.split(".")
    for base in (root, *map(Path, filter(None, sys.path))):
        found = []
        for i in range(1, len(parts)):
            init = base.joinpath(*parts[:i], "__init__.py")
            if init.is_file():
                found.append(init)
        leaf = base.joinpath(*parts)
        for cand in (leaf.with_suffix(".py"), leaf / "__init__.py"):
            if cand.is_file():
                return [*found, cand]
    return []


def display(path: Path, root: Path) -> str:
    """Root-relative where possible: a project copied elsewhere keeps its keys."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple({os.path.normpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib") if k in paths})


def _record_rows(dist) -> tuple[str, list[list[str]]] | None:
    """(the RECORD's path relative to the distribution's location, its rows), read as CSV text:
    importlib.metadata's `files` builds a path object per row, 1 s for torch's 50,000 rows on
    2 cores, once in every export stage. None when the distribution has no RECORD."""
    info = getattr(dist, "_path", None)  # a PathDistribution's .dist-info folder
    if info is None or not str(info).endswith(".dist-info"):
        files = dist.files or []
        record = next((str(f) for f in files if f.name == "RECORD" and f.parent.name.endswith(".dist-info")), None)
        if record is None:
            return None
        return record, [[str(f), f"{f.hash.mode}={f.hash.value}" if f.hash else ""] for f in files]
    text = dist.read_text("RECORD")
    if text is None:
        return None
    return f"{Path(info).name}/RECORD", [row for row in csv.reader(text.splitlines()) if row]


def _sha256_hex(value: str) -> str | None:
    """A RECORD hash field ("sha256=<urlsafe base64>") as hex; None for any other or none."""
    mode, _, digest = value.partition("=")
    if mode != "sha256" or not digest:
        return None
    return base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()


@functools.lru_cache(maxsize=1)
def _installed() -> dict:
    """Installed file (normalised absolute path) -> (dist, version, location, RECORD, rel, its
    RECORD hash field as written)."""
    import importlib.metadata

    owners: dict[str, tuple] = {}
    seen = set()
    for dist in importlib.metadata.distributions():
        metadata = dist.metadata  # parsed on each access: once here
        name = metadata["Name"]
        if not name or name.lower() in seen:
            continue  # shadowed by an earlier sys.path entry, as the import system does
        seen.add(name.lower())
        found = _record_rows(dist)
        if found is None:
            continue
        record, rows = found
        location = os.path.normpath(str(dist.locate_file("")))
        version = metadata["Version"]
        for row in rows:
            rel = row[0]
            if (
                "//" in rel or "/./" in rel or rel.startswith("./") or rel.endswith("/") or rel == "."
            ):  # as importlib.metadata names it ("./a//b" -> "a/b")
                rel = str(PurePosixPath(rel))
            # the hash stays as written: converted only for the few files a stage loaded
            raw_hash = row[1] if len(row) > 1 else ""
            if ".." in rel or rel.startswith("/"):
                path = os.path.normpath(os.path.join(location, rel))
            else:
                path = f"{location}/{rel}"
            owners.setdefault(path, (name, version, location, record, rel, raw_hash))
    return owners


def prewarm() -> None:
    """Reads the installed distributions' RECORDs now, in this process: a stage's child forked
    after this finds them read (once per build, not once per export)."""
    _installed()


def snapshot(root: Path) -> dict:
    """Every module file loaded in this process (stdlib and trtforge's own left out), sorted into
    installed distributions and plain sources. Run after a stage: it may read installed RECORDs."""
    stdlib = _stdlib_dirs()
    owners = _installed()
    sources: set = set()
    dists: dict = {}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if not isinstance(f, str) or not os.path.isabs(f):
            continue
        f = os.path.normpath(f)
        if f.startswith(_PKG_DIR + os.sep):
            continue
        owner = owners.get(f)
        if owner is None:
            in_site = "site-packages" in f or "dist-packages" in f
            if f.startswith(stdlib) and not in_site:
                continue
            if os.path.isfile(f):
                sources.add(display(Path(f), root))
            continue
        name, version, location, record, rel, raw_hash = owner
        d = dists.setdefault(name, {"version": version, "location": location, "record": record, "files": {}})
        d["files"][rel] = _sha256_hex(raw_hash)
    return {"sources": sorted(sources), "dists": dict(sorted(dists.items()))}


def _source_path(source: str, root: Path) -> str:
    return source if os.path.isabs(source) else f"{root}/{source}"


def _paths(deps: dict, root: Path) -> list[str]:
    # plain string joins: ~2,000 paths per no-op build, and os.path.join costs 3 us each
    out = [_source_path(s, root) for s in deps.get("sources", [])]
    for d in deps.get("dists", {}).values():
        loc = d["location"]
        out.append(f"{loc}/{d['record']}")
        out.extend(f"{loc}/{rel}" for rel in d["files"])
    return out


def material(deps: dict, root: Path) -> dict:
    """The key material of a recorded set, from the files as they are now (stat memo: a file is
    re-hashed only when its size, mtime, ctime or inode changed)."""
    digests = digest_many(_paths(deps, root))
    sources = {s: digests[_source_path(s, root)] for s in deps.get("sources", [])}
    dists = {}
    for name, d in sorted(deps.get("dists", {}).items()):
        loc = d["location"]
        modified = {
            rel: digests[f"{loc}/{rel}"] for rel, want in sorted(d["files"].items()) if digests[f"{loc}/{rel}"] != want
        }
        dists[name] = {"version": d["version"], "record": digests[f"{loc}/{d['record']}"], "modified": modified}
    return {"python": platform.python_version(), "sources": sources, "dists": dists}


def changed_after(deps: dict, root: Path, t_ns: int) -> str | None:
    """A recorded file whose inode changed after `t_ns` (the stage's start): it may have been
    read before the change, so the artifact cannot be stored under the new content's key."""
    for path in _paths(deps, root):
        try:
            if os.stat(path).st_ctime_ns > t_ns:
                return path
        except OSError:
            return path
    return None
