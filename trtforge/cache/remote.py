"""The remote cache: the store's records and blobs on any fsspec URL (s3://bucket/prefix, or
file:///mnt/share for a network folder), shared by every runner of a build farm.

The local store is always asked first; a miss asks the remote, whose objects are downloaded into
the local store and checked there: a record against its own sealed digest and its key, every blob
against its digest and size. A corrupt or partial object is a miss, reported, never used. After a
stage ran, its blobs are uploaded (content-addressed: an object of that name can only ever hold
those bytes) and its record last, so a record visible on the remote always names blobs that are
there. Each object is written whole or not at all: object stores (S3, GCS, Azure) make a PUT
visible only when complete; other filesystems get a temp name and a rename. Two runners uploading
one key write identical blobs, and either record (each complete, each naming its own blobs) is a
valid answer for that key.

Remote layout under the URL (the local store's names, so a pull is a copy):
    blobs/ab/<sha256>
    actions/ab/<key>.json  actions/ab/<key>.key.json
    deps/ab/<base>/<key>.json   one object per record built from a base key (no read-modify-write
                                of a shared list: concurrent runners cannot drop each other's)

fsspec and its backends are imported on first use: a build that hits the local cache never
imports them or touches the network.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtforge.cache.keys import hash_file
from trtforge.cache.records import DamagedRecord, Record, parse_record, seal
from trtforge.cache.testhooks import checkpoint
from trtforge.errors import CacheError

ENV_URL = "TRTFORGE_REMOTE_CACHE"
ENV_MODE = "TRTFORGE_REMOTE_CACHE_MODE"  # read-only | read-write
MODES = ("read-write", "read-only")
# stores whose PUT is atomic (the object appears whole, or not at all): no temp name needed, and
# a rename there would be a second full copy
ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"}
HINT = (
    "check the URL, that the bucket exists and the credentials ($AWS_ACCESS_KEY_ID, "
    "$AWS_SECRET_ACCESS_KEY, $AWS_ENDPOINT_URL); the build runs locally without it unless "
    "--require-remote"
)


@dataclass(frozen=True)
class RemoteConfig:
    """Where the remote is and how it is used; resolved once, picklable for --jobs workers."""

    url: str
    read_only: bool = False
    options: tuple = ()  # fsspec storage options as sorted (name, value) pairs, e.g. endpoint_url
    required: bool = False  # --require-remote: a remote failure fails the build (exit 2)


def resolve(
    manifest_cache: dict | None, *, read_only: bool | None = None, required: bool = False
) -> RemoteConfig | None:
    """The remote in force: $TRTFORGE_REMOTE_CACHE over the manifest's [cache] remote; the mode
    from the flag, $TRTFORGE_REMOTE_CACHE_MODE or [cache] read_only. None: no remote."""
    cfg = manifest_cache or {}
    url = os.environ.get(ENV_URL) or cfg.get("remote") or ""
    if not url:
        if required:
            raise CacheError(
                "--require-remote but no remote cache is configured",
                where="--require-remote",
                hint=f"set [cache] remote in the manifest or ${ENV_URL}",
            )
        return None
    mode = os.environ.get(ENV_MODE)
    if mode is not None and mode not in MODES:
        raise CacheError(f"'{mode}' is not one of {', '.join(MODES)}", where=f"${ENV_MODE}")
    ro = read_only if read_only else (mode == "read-only" if mode else bool(cfg.get("read_only", False)))
    return RemoteConfig(
        url=url.rstrip("/"), read_only=ro, options=tuple(sorted((cfg.get("options") or {}).items())), required=required
    )


def open_remote(
    manifest_cache: dict | None, *, read_only: bool = False, required: bool = False, use: bool = True
) -> Remote | None:
    """The remote in force, or None. Nothing is imported or contacted until a lookup misses
    locally, unless `required`: then it is checked now (a failure is a CacheError, exit 2)."""
    if not use:
        return None
    config = resolve(manifest_cache, read_only=read_only or None, required=required)
    if config is None:
        return None
    remote = Remote(config)
    if required:
        remote.check()
    return remote


class RemoteUnavailable(Exception):
    """The remote cannot be used (credentials, missing bucket, network): one line."""


def describe(e: BaseException) -> str:
    """One line for an error raised by fsspec or a backend (botocore's carry a code)."""
    if isinstance(e, PermissionError):
        return f"access denied ({_short(e)})"
    if isinstance(e, FileNotFoundError):
        return f"not found ({_short(e)})"
    return f"{type(e).__name__}: {_short(e)}"


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


@dataclass
class Stats:
    fetched: list = field(default_factory=list)  # stages whose record the remote served
    uploaded: list = field(default_factory=list)  # stages whose record was uploaded
    bytes_down: int = 0
    bytes_up: int = 0
    corrupt: list = field(default_factory=list)  # remote objects found damaged (reported)
    # records this runner built whose artifacts differ from the remote's for the same key
    diverged: list = field(default_factory=list)


class Remote:
    def __init__(self, config: RemoteConfig):
        self.config = config
        self._fs: Any = None  # an fsspec filesystem, opened on first use
        self._root = ""
        self.failure: str | None = None  # the first failure: the remote is off for the rest of the run
        self.stats = Stats()
        self._bad_blobs: set[str] = set()  # found corrupt here: re-uploaded by the next push

    # ------------------------------------------------------------------------------ access
    @property
    def writable(self) -> bool:
        return not self.config.read_only

    def _connect(self):
        if self._fs is None:
            try:
                import fsspec
            except ImportError:
                raise RemoteUnavailable("fsspec is not installed (pip install 'trtforge[remote]')") from None
            try:
                fs, root = fsspec.core.url_to_fs(self.config.url, **dict(self.config.options))
            except (ImportError, ValueError) as e:  # unknown protocol or its package missing
                raise RemoteUnavailable(f"cannot open: {_short(e)}") from None
            self._fs, self._root = fs, root.rstrip("/")
            self._probe()
        return self._fs

    def _probe(self) -> None:
        """One request that fails the way every later one would: wrong credentials, a missing
        bucket or folder, no route. A missing prefix inside an existing bucket is fine (empty)."""
        fs, top = self._fs, self._root.split("/")[0] if self._protocol() in ATOMIC_PUT else self._root
        try:
            if self._protocol() in ATOMIC_PUT:
                fs.ls(top, detail=False, refresh=True)
            elif not fs.isdir(top):
                if self.config.read_only:
                    raise FileNotFoundError(top)
                fs.makedirs(top, exist_ok=True)
        except Exception as e:  # noqa: BLE001 - any backend's error is "unavailable", one line
            raise RemoteUnavailable(describe(e)) from None

    def _protocol(self) -> str:
        proto = self._fs.protocol
        return proto if isinstance(proto, str) else proto[0]

    def _path(self, *parts: str) -> str:
        return "/".join((self._root, *parts))

    def _call(self, what: str, fn, *args):
        """Run one remote operation; a failure turns the remote off for this run (or, with
        --require-remote, fails the build) instead of failing the stage."""
        if self.failure is not None:
            return None
        try:
            self._connect()
            return fn(*args)
        except RemoteUnavailable as e:
            return self._fail(str(e))
        except (FileNotFoundError, PermissionError, OSError, TimeoutError) as e:
            return self._fail(f"{what}: {describe(e)}")
        except Exception as e:  # noqa: BLE001 - botocore/aiohttp errors are not OSErrors
            if type(e).__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec"):
                return self._fail(f"{what}: {describe(e)}")
            raise

    def _fail(self, message: str) -> None:
        self.failure = f"remote cache {self.config.url}: {message}"
        if self.config.required:
            raise CacheError(self.failure, hint=HINT.replace(" unless --require-remote", ""))
        return None

    def check(self) -> None:
        """Connect now (--require-remote, `cache ... --remote`): a failure is a CacheError."""
        self._call("connect", lambda: None)
        if self.failure is not None:
            raise CacheError(self.failure, hint=HINT)

    # ------------------------------------------------------------------------------- read
    def fetch(self, key: str, store) -> dict | None:
        """The record for `key`, downloaded into `store` with its blobs, each checked; None on a
        miss (absent, damaged, incomplete, or the remote unavailable)."""
        return self._call("download", self._fetch, key, store)

    def peek(self, key: str) -> dict | None:
        """The remote's record for `key`, checked, without its blobs (None: a miss). For planning:
        whether a runner stored it, and the digests later keys are made of."""

        def get() -> dict | None:
            try:
                return self._record(key)
            except DamagedRecord:
                return None  # rebuilt by the job that needs it

        return self._call("download", get)

    def _record(self, key: str) -> dict | None:
        """The remote's record for `key`, checked (DamagedRecord), or None when it has none."""
        data = self._get(self._path("actions", key[:2], f"{key}.json"))
        return None if data is None else parse_record(data, key)

    def _fetch(self, key: str, store) -> dict | None:
        try:
            doc = self._record(key)
        except DamagedRecord as e:
            self._corrupt(f"record {key[:12]}", str(e))
            return None
        if doc is None:
            return None
        for name, o in doc["outputs"].items():
            if not self._fetch_blob(store, o["digest"], o["size"], f"{doc['stage']} {key[:12]} {name}"):
                return None
        key_doc = self._get(self._path("actions", key[:2], f"{key}.key.json"))
        store.install_record(doc, key_doc)
        self.stats.fetched.append(doc["stage"])
        return doc

    def _fetch_blob(self, store, digest: str, size: int, what: str) -> bool:
        dest = store._blob(digest)
        if dest.exists():
            return True
        tmp = store.temp_path(f"remote.{digest[:16]}")
        try:
            try:
                self._fs.get_file(self._path("blobs", digest[:2], digest), str(tmp))
            except FileNotFoundError:
                return False  # an upload in progress, or one killed before its record: a miss
            got_size = tmp.stat().st_size
            if got_size != size or hash_file(tmp) != digest:
                self._bad_blobs.add(digest)
                self._corrupt(
                    what, f"{got_size} bytes, digest mismatch" if got_size == size else f"{got_size} of {size} bytes"
                )
                return False
            self.stats.bytes_down += got_size
            store.install_blob(tmp, digest)
            return True
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def take_summary(self) -> dict:
        """What the remote did since the last call (one module's build), for the report."""
        s, self.stats = self.stats, Stats(corrupt=self.stats.corrupt)
        return {
            "url": self.config.url,
            "read_only": self.config.read_only,
            "fetched": s.fetched,
            "uploaded": s.uploaded,
            "bytes_down": s.bytes_down,
            "bytes_up": s.bytes_up,
            "failure": self.failure,
            **({"diverged": s.diverged} if s.diverged else {}),
        }

    def take_notes(self) -> list[str]:
        notes, self.stats.corrupt = self.stats.corrupt, []
        return notes

    def _corrupt(self, what: str, why: str) -> None:
        self.stats.corrupt.append(f"corrupt remote object ignored: {what} ({why}); rebuilt locally")

    def _get(self, path: str) -> bytes | None:
        try:
            return self._fs.cat_file(path)
        except FileNotFoundError:
            return None

    def deps_keys(self, base: str) -> list[str]:
        """Keys of the records built from `base` on any runner, newest first."""
        out = self._call("list", self._deps_keys, base)
        return out or []

    def _deps_keys(self, base: str) -> list[str]:
        try:
            entries = self._fs.ls(self._path("deps", base[:2], base), detail=True, refresh=True)
        except FileNotFoundError:
            return []
        entries.sort(key=lambda e: str(e.get("LastModified") or e.get("mtime") or e.get("created") or ""), reverse=True)
        names = [e["name"].rsplit("/", 1)[-1] for e in entries]
        return [n[: -len(".json")] for n in names if n.endswith(".json") and not n.startswith(".")]

    # ------------------------------------------------------------------------------ write
    def push(self, key: str, store) -> bool:
        """Upload a stored record's blobs, its key document, then the record itself (its local
        bytes: the same sealed document). False when read-only, unavailable or not stored here."""
        if not self.writable:
            return False
        return bool(self._call("upload", self._push, key, store))

    def _push(self, key: str, store) -> bool:
        try:
            data = store._action(key).read_bytes()
            doc = parse_record(data, key)
        except (OSError, DamagedRecord):
            return False
        if self._kept_theirs(key, doc, store):
            return True
        for o in doc["outputs"].values():
            self._put_blob(store._blob(o["digest"]), o["digest"], o["size"])
        checkpoint(f"remote:record:{doc['stage']}")  # blobs up, record not yet (test hook)
        with contextlib.suppress(OSError):
            self._put_bytes(
                store._action(key).with_suffix(".key.json").read_bytes(),
                self._path("actions", key[:2], f"{key}.key.json"),
            )
        self._put_bytes(data, self._path("actions", key[:2], f"{key}.json"))
        self.stats.uploaded.append(doc["stage"])
        return True

    def _kept_theirs(self, key: str, doc: dict, store) -> bool:
        """Parity: another runner stored this key first. Same artifacts: nothing to upload.
        Different ones (a builder that is not deterministic): the first stays the answer for
        everyone, this runner takes it too (downloaded over its own, so its later stages are keyed
        like every other runner's), and the difference is reported, never silent."""
        if doc["stage"] in POINTERS:
            return False
        try:
            theirs = self._record(key)
        except DamagedRecord:
            return False  # overwritten by this runner's good one
        if theirs is None:
            return False
        mine, first = _keyed(doc), _keyed(theirs)
        if mine == first:  # nothing to upload, unless a blob of it was found damaged here
            return not any(o["digest"] in self._bad_blobs for o in doc["outputs"].values())
        files = {
            n: {"here": mine.get(n), "remote": first.get(n)}
            for n in sorted({*mine, *first})
            if mine.get(n) != first.get(n)
        }
        if self._fetch(key, store) is None:  # the remote's is damaged or incomplete: this one replaces it
            return False
        self.stats.diverged.append({"stage": doc["stage"], "key": key, "files": files, "kept": "remote"})
        self.stats.corrupt.append(
            f"not reproducible: {doc['stage']} {key[:12]} built here differs from the remote's for the same key "
            f"({', '.join(files)}); kept the remote's (the first) and used it here"
        )
        return True

    def push_deps(self, base: str, key: str) -> None:
        if self.writable:
            self._call(
                "upload",
                lambda: self._put_bytes(
                    seal({"key": key, "created": time.time()}), self._path("deps", base[:2], base, f"{key}.json")
                ),
            )

    def _put_blob(self, local: Path, digest: str, size: int) -> None:
        path = self._path("blobs", digest[:2], digest)
        if digest not in self._bad_blobs:
            try:
                if self._fs.info(path)["size"] == size:
                    return  # content-addressed: already there (a partial one has another size)
            except FileNotFoundError:
                pass
        self._put_file(str(local), path)
        self._bad_blobs.discard(digest)
        self.stats.bytes_up += size

    def _put_bytes(self, data: bytes, path: str) -> None:
        self._put(path, lambda dest: self._fs.pipe_file(dest, data))

    def _put_file(self, local: str, path: str) -> None:
        self._put(path, lambda dest: self._fs.put_file(local, dest))

    def _put(self, path: str, write: Callable[[str], object]) -> None:
        """Write one object whole or not at all: directly where a PUT is atomic, else under a
        temp name renamed when complete."""
        if self._protocol() in ATOMIC_PUT:
            write(path)
            return
        folder, name = path.rsplit("/", 1)
        self._fs.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        write(tmp)
        checkpoint(f"remote:atomic:{_kind(path)}")  # written under its temp name (test hook)
        try:
            self._fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                self._fs.rm_file(tmp)
            raise

    # ------------------------------------------------------------------------------- list
    def records(self) -> list[dict]:
        """Every valid record on the remote (damaged ones noted in stats.corrupt)."""
        return self._call("list", self._records) or []

    def _find(self, folder: str) -> list[str]:
        try:
            return sorted(self._fs.find(self._path(folder)))
        except FileNotFoundError:
            return []

    def _records(self) -> list[dict]:
        out = []
        for p in self._find("actions"):
            name = p.rsplit("/", 1)[-1]
            if name.startswith(".") or name.endswith(".key.json") or not name.endswith(".json"):
                continue
            data = self._get(p)
            try:
                out.append(parse_record(data or b"", name[: -len(".json")]))
            except DamagedRecord as e:
                self._corrupt(f"record {name[:12]}", str(e))
        return out

    def all_deps(self) -> list[tuple[str, str]]:
        """(base, key) of every deps object on the remote (for `cache pull`)."""
        return self._call("list", self._all_deps) or []

    def _all_deps(self) -> list[tuple[str, str]]:
        pairs = (p.rsplit("/", 2)[-2:] for p in self._find("deps"))
        return [(base, name[: -len(".json")]) for base, name in pairs if name.endswith(".json") and name[0] != "."]

    def has(self, key: str) -> bool:
        return bool(self._call("list", lambda: self._fs.exists(self._path("actions", key[:2], f"{key}.json"))))


# records that point at the newest of something (a target's timing cache, a module's published
# build): the newer one replaces the older by design, not a parity question
POINTERS = ("timing", "release")


def _keyed(doc: dict) -> dict:
    """A record's artifact digests as parity compares them (logs and timing caches left out)."""
    return Record.of(doc).digests()


def _kind(path: str) -> str:
    """blob, key, deps or record: the test hooks' name for an object being written."""
    rel = path.rsplit("/actions/", 1)[-1] if "/actions/" in path else path
    if "/blobs/" in path:
        return "blob"
    if "/deps/" in path:
        return "deps"
    return "key" if rel.endswith(".key.json") else "record"
