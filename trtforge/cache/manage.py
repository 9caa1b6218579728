"""`trtforge cache verify`, `trtforge cache gc` and `trtforge cache push/pull`.

Neither ever follows a link: only regular files inside real subfolders of the cache are read or
removed, so a symlink planted in blobs/ (or a linked subfolder) cannot make gc delete anything
outside the cache. gc holds the store's exclusive gc lock; `Store.put` holds it shared while it
moves blobs in and writes their record, so a blob is never collected between the two.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

from trtforge.cache.keys import hash_file
from trtforge.cache.records import DamagedRecord, parse_index, parse_record
from trtforge.errors import CacheError

SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# digits only: no sign, no exponent, no inf or nan (`--max-size -1` once deleted every record)
_AMOUNT = r"(\d{1,15}(?:\.\d{1,6})?)"


def parse_size(text: str, option: str) -> int:
    """'20G', '500M', '1.5T', '0' (bytes when no unit); anything else is one line, exit 2."""
    m = re.fullmatch(_AMOUNT + r"\s*([KMGT]?)(?:i?B)?", text.strip(), re.I)
    if not m:
        raise CacheError(
            f"'{text}' is not a size",
            where=option,
            hint="write a number of bytes or a number with K, M, G or T, e.g. 20G",
        )
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2).upper()])


def parse_age(text: str, option: str) -> float:
    """'30d', '12h', '90m', '3600' (seconds when no unit); anything else is one line, exit 2."""
    m = re.fullmatch(_AMOUNT + r"\s*([smhdw]?)", text.strip())
    if not m:
        raise CacheError(f"'{text}' is not an age", where=option, hint="write a number with s, m, h, d or w, e.g. 30d")
    return float(m.group(1)) * AGE_UNITS[m.group(2)]


def regular_files(folder: Path):
    """(path, size) of the regular files one level of real subfolders below `folder`; dot names
    (temp files being written) are skipped, links are neither followed nor returned."""
    try:
        subs = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for sub in subs:
        if not sub.is_dir(follow_symlinks=False):
            continue
        for entry in sorted(os.scandir(sub.path), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                size = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:  # removed since the folder was listed
                continue
            yield Path(entry.path), size


def records(root: Path, damaged: list | None = None):
    """(record document, path) for every action record whose digest and schema check out; the
    damaged ones are appended to `damaged` as (path, reason) and never yielded."""
    for path, _ in regular_files(root / "actions"):
        if path.name.endswith(".key.json") or not path.name.endswith(".json"):
            continue
        try:
            yield parse_record(path.read_bytes(), path.name[: -len(".json")]), path
        except OSError:
            continue
        except DamagedRecord as e:
            if damaged is not None:
                damaged.append((path, str(e)))


def listing(root: Path, damaged: list | None = None) -> list[dict]:
    """`cache ls`: one row per record, oldest first: key, stage, module(s), bytes, created. The
    module is each module whose last build used the record (index/), else the one that built it."""
    users: dict[str, set[str]] = {}
    for path, _ in regular_files(root / "index"):
        with contextlib.suppress(OSError, DamagedRecord):
            users.setdefault(parse_index(path.read_bytes())["key"], set()).add(path.parent.name)
    rows = []
    for doc, _ in records(root, damaged):
        modules = sorted(users.get(doc["key"], ())) or ([doc["module"]] if isinstance(doc.get("module"), str) else [])
        rows.append(
            {
                "key": doc["key"],
                "stage": doc["stage"],
                "module": ",".join(modules) or "-",
                "bytes": sum(o["size"] for o in doc["outputs"].values()),
                "created": doc["created"],
                "digests": {o["digest"]: o["size"] for o in doc["outputs"].values()},
            }
        )
    return sorted(rows, key=lambda r: r["created"])


def verify_all(store) -> list[str]:
    """Re-hash every blob (ignoring the stat memo), drop the corrupt ones and the records that
    then point at a missing blob (a later build rebuilds them); return the problems. A second
    run after the first is clean: nothing it found is left behind to be found again."""
    problems = []
    with store.gc_lock(exclusive=True):  # a running build's new record is not dangling yet
        for blob, _ in regular_files(store.root / "blobs"):
            if hash_file(blob) != blob.name:
                problems.append(f"corrupt blob {blob.name[:16]}")
                os.unlink(blob)
        damaged: list = []
        for doc, path in list(records(store.root, damaged)):  # listed first: dropping removes files
            missing = [n for n, o in doc["outputs"].items() if not store._blob(o["digest"]).is_file()]
            if missing:
                problems.append(
                    f"record {doc['key'][:12]} ({doc['stage']}): missing {', '.join(missing)}; "
                    "record dropped, the next build rebuilds it"
                )
                _drop(path)
        for path, reason in damaged:  # never used by a build; dropped so the next build rewrites it
            problems.append(f"damaged record {path.name[:12]}: {reason}; removed")
            _drop(path)
        shutil.rmtree(store.root / "views", ignore_errors=True)  # links to what was dropped
        (store.root / "views").mkdir(exist_ok=True)
    return problems


def _current_keys(root: Path, pinned: bool = False) -> set[str]:
    """Keys of the last build of every module and stage and of every published entry (index/):
    what a no-op build needs; `pinned`: only those behind a published entry of any target."""
    from trtforge.cache.records import PIN

    keys = set()
    for path, _ in regular_files(root / "index"):
        if pinned and PIN not in path.name:
            continue
        with contextlib.suppress(OSError, DamagedRecord):
            keys.add(parse_index(path.read_bytes())["key"])
    return keys


def _drop(path: Path) -> None:
    path.with_suffix(".key.json").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def _prune_deps(store, kept: set[str]) -> None:
    """deps/ lists record keys per base key: keep the kept ones, drop files left with none."""
    from trtforge.cache.atomic import atomic_write_bytes
    from trtforge.cache.records import seal, unseal

    for path, _ in regular_files(store.root / "deps"):
        try:
            keys = unseal(path.read_bytes()).get("keys")
        except (OSError, DamagedRecord):
            keys = None
        live = [k for k in keys if k in kept] if isinstance(keys, list) else []
        if not live:
            path.unlink(missing_ok=True)
        elif live != keys:
            atomic_write_bytes(path, seal({"keys": live}))


def gc(store, max_bytes: int | None = None, older_than_s: float | None = None) -> dict:
    """Drop records older than `older_than_s` (except those of the last build), then the oldest
    records (the last build's last) until the blobs they use fit in `max_bytes`; then every blob no
    record uses, stale temp files of dead writers, and the views (rebuilt on demand). The records
    behind a published entry of any target (Store.pin) are never dropped: `--max-size` once
    evicted the targets the last run did not build, and the next no-change build rebuilt them."""
    from trtforge.cache.tempnames import sweep_temps, sweep_writer_temps

    root = store.root
    with store.gc_lock(exclusive=True):
        sweep_temps(root / "tmp", prefix="")
        sweep_writer_temps(root)
        for top in ("blobs", "actions", "index", "deps"):
            for sub in (root / top).iterdir():
                if sub.is_dir() and not sub.is_symlink():
                    sweep_temps(sub)
        current, pinned = _current_keys(root), _current_keys(root, pinned=True)
        now = time.time()
        damaged: list = []
        # oldest first; the last build's records go last; the published ones are kept apart
        docs: list[tuple[dict, Path]] = []
        kept: list[tuple[dict, Path]] = []
        for doc, path in records(root, damaged):
            (kept if doc["key"] in pinned else docs).append((doc, path))
        docs.sort(key=lambda dp: (dp[0]["key"] in current, dp[0]["created"]))
        for path, _ in damaged:  # never used: garbage
            _drop(path)
        removed = len(damaged)
        if older_than_s is not None:
            for doc, path in list(docs):
                if doc["key"] not in current and now - doc["created"] > older_than_s:
                    _drop(path)
                    docs.remove((doc, path))
                    removed += 1
        sizes = {p.name: s for p, s in regular_files(root / "blobs")}

        def live() -> set[str]:
            return {o["digest"] for d, _ in docs + kept for o in d["outputs"].values()}

        while max_bytes is not None and docs and sum(sizes.get(d, 0) for d in live()) > max_bytes:
            _drop(docs.pop(0)[1])
            removed += 1
        keep, freed = live(), 0
        for blob, size in regular_files(root / "blobs"):
            if blob.name not in keep:
                blob.unlink()
                freed += size
        _prune_deps(store, {d["key"] for d, _ in docs + kept})
        shutil.rmtree(root / "views", ignore_errors=True)
        (root / "views").mkdir(exist_ok=True)
    return {"records_removed": removed, "bytes_freed": freed}


def push_all(store, remote) -> tuple[int, int]:
    """`cache push`: every local record the remote lacks (blobs first, the record last), then the
    deps entries that let other runners find records keyed on loaded code. (pushed, already there)"""
    pushed = skipped = 0
    keys = set()
    for doc, _ in records(store.root):
        keys.add(doc["key"])
        if remote.has(doc["key"]):
            skipped += 1
        elif remote.push(doc["key"], store):
            pushed += 1
    for path, _ in regular_files(store.root / "deps"):
        base = path.name[: -len(".json")]
        for key in store.deps_keys(base):
            if key in keys:
                remote.push_deps(base, key)
    remote.check()  # a failure met on the way: one line, exit 2
    return pushed, skipped


def pull_all(store, remote) -> tuple[int, int]:
    """`cache pull`: every remote record the local store lacks, each object checked by digest, and
    the deps entries of the records now here. (pulled, already here)"""
    pulled = present = 0
    for doc in remote.records():
        if store.holds(doc["key"]):
            present += 1
        elif remote.fetch(doc["key"], store) is not None:
            pulled += 1
    for base, key in remote.all_deps():
        if store.lookup(key) is not None:
            store.add_deps_key(base, key, push=False)
    remote.check()
    return pulled, present
