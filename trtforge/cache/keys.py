"""Cache keys: canonical JSON of everything that can change a stage's bytes, hashed with SHA-256.

File digests are memoised on (size, mtime_ns, ctime_ns, inode) so an unchanged no-op build hashes
nothing large; `trtforge cache verify` ignores the memo and re-hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from trtforge.cache.tempnames import temp_beside

_CHUNK = 1 << 20


def canonical_json(obj) -> str:
    """Sorted keys, no whitespace, tuples as lists: equal meaning gives equal text in any process."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_default)


def _default(obj):
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not canonical-JSON serialisable: {type(obj).__name__}")


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_of(doc) -> str:
    return digest_bytes(canonical_json(doc).encode())


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_sig(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class DigestMemo:
    """Remembers file digests in `<cache>/statmemo/`, one small JSON file per path."""

    def __init__(self, root: Path | None):
        self.root = root

    def _slot(self, path: Path) -> Path | None:
        if self.root is None:
            return None
        return self.root / digest_bytes(str(path.resolve()).encode())[:32]

    def digest(self, path: Path, *, trust_memo: bool = True) -> str:
        st = os.stat(path)
        slot = self._slot(path)
        if trust_memo and slot is not None:
            try:
                memo = json.loads(slot.read_text())
                if memo["sig"] == _stat_sig(st) and isinstance(memo["digest"], str):
                    return memo["digest"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
        value = hash_file(path)
        if slot is not None and _stat_sig(os.stat(path)) == _stat_sig(st):
            try:
                slot.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_beside(slot)
                tmp.write_text(json.dumps({"sig": _stat_sig(st), "digest": value, "path": str(path)}))
                os.replace(tmp, slot)
            except OSError:
                pass  # a read-only cache still works, it just re-hashes
        return value

    def remember(self, path: Path, value: str) -> None:
        """`path` holds `value` as it is now (its content was hashed or checked in this process):
        the memo follows its stat (a new hard link changes its ctime), so the next run need not
        hash it again. Writes only when the memo differs."""
        slot = self._slot(path)
        if slot is None:
            return
        try:
            sig = _stat_sig(os.stat(path))
            try:
                memo = json.loads(slot.read_text())
                if memo.get("sig") == sig and memo.get("digest") == value:
                    return
            except (OSError, ValueError, AttributeError):
                pass
            slot.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_beside(slot)
            tmp.write_text(json.dumps({"sig": sig, "digest": value, "path": str(path)}))
            os.replace(tmp, slot)
        except OSError:
            pass  # a read-only cache still works, it just re-hashes

    def digest_many(self, paths: list[str]) -> dict[str, str | None]:
        """Digests of many files (None: missing) with one memo file for the whole set: the code a
        stage loaded is ~2,000 files, and one small memo file each would cost more than the stats.
        Written back only when something changed, so a no-op build writes nothing."""
        slot = (
            None if self.root is None else (self.root / "sets" / digest_bytes("\n".join(sorted(paths)).encode())[:32])
        )
        memo = {}
        if slot is not None:
            try:
                memo = json.loads(slot.read_text())
            except (OSError, ValueError):
                memo = {}
            if not isinstance(memo, dict):
                memo = {}
        out: dict[str, str | None] = {}
        fresh: dict = {}
        changed = False
        for path in paths:
            sig = _STATS.get(path, False)
            if sig is False:
                try:
                    sig = _STATS[path] = _stat_sig(os.stat(path))
                except OSError:
                    sig = _STATS[path] = None
            if sig is None:
                out[path] = None
                continue
            seen = _SEEN.get(path) or memo.get(path)
            if isinstance(seen, list) and len(seen) == 2 and seen[0] == sig:
                out[path] = seen[1]
            else:
                out[path] = hash_file(Path(path))
                changed = True
                if _stat_sig(os.stat(path)) != sig:  # rewritten while hashing: do not memoise
                    continue
            _SEEN[path] = fresh[path] = [sig, out[path]]
        if slot is not None and (changed or fresh.keys() != memo.keys()):
            try:
                slot.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_beside(slot)
                tmp.write_text(json.dumps(fresh))
                os.replace(tmp, slot)
            except OSError:
                pass  # a read-only cache still works, it just re-hashes
        return out

    def derived(self, kind: str, digest: str, compute) -> str:
        """A value computed from a file's content, memoised on that content's digest (e.g. the
        digest of a RECORD's portable rows): computed once per content, not once per build."""
        key = (kind, digest)
        if key in _DERIVED:
            return _DERIVED[key]
        slot = None if self.root is None else self.root / "derived" / kind / digest[:32]
        value = None
        if slot is not None:
            try:
                value = slot.read_text().strip() or None
            except OSError:
                value = None
        if value is None:
            value = compute()
            if slot is not None:
                try:
                    slot.parent.mkdir(parents=True, exist_ok=True)
                    tmp = slot.with_name(f".{slot.name}.{os.getpid()}.tmp")
                    tmp.write_text(value)
                    os.replace(tmp, slot)
                except OSError:
                    pass  # a read-only cache still works, it just recomputes
        _DERIVED[key] = value
        return value


_DERIVED: dict[tuple[str, str], str] = {}  # (kind, content digest) -> derived value, for this process
_SEEN: dict[str, list] = {}  # path -> [stat signature, digest], for this process
# path -> stat signature (None: missing), shared by the modules of one run: the code they loaded
# is mostly the same ~2,000 files. Forgotten whenever a stage has run (forget_stats), so a key
# stored after a run is computed from the files as they are then.
_STATS: dict[str, list | None] = {}


def forget_stats() -> None:
    _STATS.clear()


_MEMO = DigestMemo(None)


def set_memo_root(root: Path | None) -> None:
    global _MEMO
    _MEMO = DigestMemo(root)


def digest_file(path: Path, *, trust_memo: bool = True) -> str:
    return _MEMO.digest(Path(path), trust_memo=trust_memo)


def remember_digest(path: Path, value: str) -> None:
    _MEMO.remember(Path(path), value)


def digest_many(paths: list[str]) -> dict[str, str | None]:
    return _MEMO.digest_many(paths)


def derived_digest(kind: str, digest: str, compute) -> str:
    return _MEMO.derived(kind, digest, compute)
