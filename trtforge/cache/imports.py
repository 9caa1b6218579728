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

from trtforge.cache.keys import derived_digest, digest_bytes, digest_many

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


SYS_PATH = "sys.path:"  # a source named relative to the import path entry it was found on


def display(path: Path, root: Path) -> str:
    """A source's name in a key, never a path of this machine where avoidable: root-relative for
    the project's files (a checkout elsewhere keeps its keys), else relative to the sys.path entry
    it lies under ("sys.path:pkg/mod.py": a venv or a PYTHONPATH folder elsewhere keeps them too),
    absolute only for a file outside both."""
    if path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    text = os.path.normpath(str(path))
    best = ""
    for entry in filter(None, sys.path):
        base = os.path.normpath(entry)
        if text.startswith(base + os.sep) and len(base) > len(best):
            best = base
    return f"{SYS_PATH}{PurePosixPath(Path(text).relative_to(best))}" if best else text


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
    found: dict[str, str] = {}
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
                name = display(Path(f), root)
                sources.add(name)
                if name.startswith(SYS_PATH):
                    found[name] = f  # where it was here: the fallback where sys.path differs
            continue
        name, version, location, record, rel, raw_hash = owner
        d = dists.setdefault(name, {"version": version, "location": location, "record": record, "files": {}})
        d["files"][rel] = _sha256_hex(raw_hash)
    return {"sources": sorted(sources), "dists": dict(sorted(dists.items())), "found": dict(sorted(found.items()))}


def _source_path(source: str, root: Path, found: dict | None = None) -> str:
    if source.startswith(SYS_PATH):  # as the import system finds it here: the first entry holding it
        rel = source[len(SYS_PATH) :]
        for entry in (*filter(None, sys.path), str(root)):
            if os.path.isfile(f"{entry}/{rel}"):
                return f"{os.path.normpath(entry)}/{rel}"
        return (found or {}).get(source, f"{root}/{rel}")
    return source if os.path.isabs(source) else f"{root}/{source}"


def _location(d: dict) -> str:
    """Where the distribution lives on this machine: the first sys.path entry holding its
    dist-info (name and version), as the import system finds it; the recording runner's folder
    only when none does. Another runner's venv at another path is found by name, not by path."""
    record = d["record"]
    for entry in filter(None, sys.path):
        if os.path.isfile(f"{entry}/{record}"):
            return os.path.normpath(entry)
    return d["location"]


def _located(deps: dict) -> dict[str, str]:
    return {name: _location(d) for name, d in deps.get("dists", {}).items()}


def _paths(deps: dict, root: Path, where: dict[str, str]) -> list[str]:
    # plain string joins: ~2,000 paths per no-op build, and os.path.join costs 3 us each
    found = deps.get("found")
    out = [_source_path(s, root, found) for s in deps.get("sources", [])]
    for name, d in deps.get("dists", {}).items():
        loc = where[name]
        out.append(f"{loc}/{d['record']}")
        out.extend(f"{loc}/{rel}" for rel in d["files"])
    return out


def portable_record(data: bytes) -> bytes:
    """A RECORD without the rows that name the machine: files outside the distribution's folder
    (console scripts in bin/, whose `#!` line is the venv's absolute path) and the installer's own
    notes (INSTALLER, REQUESTED, direct_url.json: which tool installed it, from where). The code a
    stage loads is all inside the folder, so two venvs at different paths key alike."""
    keep = []
    for line in data.splitlines():
        path = line.split(b",", 1)[0].strip(b'"')
        if path.startswith((b"../", b"/")) or path.rsplit(b"/", 1)[-1] in _INSTALLER_NOTES:
            continue
        keep.append(line)
    return b"\n".join(keep)


_INSTALLER_NOTES = (b"INSTALLER", b"REQUESTED", b"direct_url.json")


def _record_digest(path: str, raw: str | None) -> str | None:
    """The digest of the RECORD's portable rows, memoised on the file's own digest (which the
    stat memo keeps): a no-op build reads no RECORD."""
    if raw is None:
        return None
    return derived_digest("portable-record-1", raw, lambda: digest_bytes(portable_record(Path(path).read_bytes())))


def material(deps: dict, root: Path) -> dict:
    """The key material of a recorded set, from the files as they are now (stat memo: a file is
    re-hashed only when its size, mtime, ctime or inode changed)."""
    where = _located(deps)
    digests = digest_many(_paths(deps, root, where))
    found = deps.get("found")
    sources = {s: digests[_source_path(s, root, found)] for s in deps.get("sources", [])}
    dists = {}
    for name, d in sorted(deps.get("dists", {}).items()):
        loc = where[name]
        modified = {
            rel: digests[f"{loc}/{rel}"] for rel, want in sorted(d["files"].items()) if digests[f"{loc}/{rel}"] != want
        }
        record = f"{loc}/{d['record']}"
        dists[name] = {"version": d["version"], "record": _record_digest(record, digests[record]), "modified": modified}
    return {"python": platform.python_version(), "sources": sources, "dists": dists}


def changed_after(deps: dict, root: Path, t_ns: int) -> str | None:
    """A recorded file whose inode changed after `t_ns` (the stage's start): it may have been
    read before the change, so the artifact cannot be stored under the new content's key."""
    for path in _paths(deps, root, _located(deps)):
        try:
            if os.stat(path).st_ctime_ns > t_ns:
                return path
        except OSError:
            return path
    return None
