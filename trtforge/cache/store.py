"""The store: blobs by digest, action records by key, views that hand a stage its input folder.

Layout under the cache root:
    blobs/ab/<sha256>          read-only file contents
    actions/ab/<key>.json      the record: output name -> digest, stage metadata (written last)
    actions/ab/<key>.key.json  the canonical key document, kept so a miss is debugged with diff
    index/<module>/<stage>.json  the key document of the last build, for `trtforge explain`
    deps/ab/<base>.json        for stages keyed on the code they loaded: the records built from
                               one base key (settings + inputs), each naming its loaded files
    views/<key>/<name>         hard links to blobs: a stage's output as a folder
    locks/<key>.lock           one flock per key: parallel builds build each artifact once
    tmp/                       stage work folders; never read as results

Publishing is temp file in the destination folder, fsync, os.replace, fsync the folder; a record
is written only after all its blobs. A blob whose digest does not match on read is a miss.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from trtforge.cache.atomic import atomic_copy, atomic_write_bytes, fsync_dir, install, mkdir_durable
from trtforge.cache.keys import digest_file, hash_file, remember_digest, set_memo_root
from trtforge.cache.plan import Plan, StageKey
from trtforge.cache.plan import plan as plan_stage
from trtforge.cache.records import PIN, DamagedRecord, Record, parse_index, parse_record, seal, unseal
from trtforge.cache.tempnames import owner_tag as _owner_tag
from trtforge.cache.tempnames import sweep_temps, sweep_writer_temps, temp_beside
from trtforge.cache.testhooks import checkpoint
from trtforge.errors import CacheError

SUBDIRS = ("blobs", "actions", "index", "deps", "views", "locks", "tmp")
MAX_DEPS_KEYS = 8  # record keys remembered per base key (see deps_keys)
# errors that mean "this folder cannot take writes now", not a bug: one line, exit 2
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class CorruptEntry(Exception):
    """A cached blob did not match its digest; the caller forgets `key` and rebuilds."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class Provenance:
    """Who built a record, besides its key: `module` names the module, for `cache ls` (not part of
    the key: another module with the same inputs and settings shares the record); `deps`: the
    files its run loaded, for a stage keyed on the code it loaded."""

    module: str | None = None
    deps: dict = field(default_factory=dict, repr=False)


def _sig(path: Path, st: os.stat_result | None = None) -> tuple[int, int, int, int]:
    """What the store's digest memo is keyed on: a file's device, inode, size and mtime."""
    st = path.stat() if st is None else st
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextlib.contextmanager
def cache_writes(where: Path):
    """Turn a full disk or a read-only cache met while writing into one line (exit 2). What was
    already published stays valid: every write is a temp name until its final rename."""
    try:
        yield
    except OSError as e:
        error = write_error(e, where)
        if error is None:
            raise
        raise error from None


def write_error(e: OSError, where: Path | str) -> CacheError | None:
    """A full disk, a quota or a read-only folder met while writing, as one line (None: another
    OSError, a bug). A stage's child reports its own writes (its work folder is in the cache) so."""
    if e.errno not in _WRITE_ERRNOS:
        return None
    return CacheError(
        f"cannot write: {e.strerror}",
        where=str(e.filename or where),
        hint="free space (trtforge cache gc --max-size ...) or pass --cache-dir; "
        "cached entries are intact, the next run resumes",
    )


class Store:
    def __init__(self, root: Path, shared: tuple[Path, ...] = (), *, writable: bool = True, remote=None):
        # absolute: a factory that chdir()s must not move a relative --cache-dir under the build
        self.root = Path(root).absolute()
        self.shared = tuple(Path(p) for p in shared)  # read-only layers under the writable one
        self._forgotten: set[str] = set()  # found corrupt here: a shared layer must not serve them again
        self.notes: list[str] = []  # damaged records met by lookups, for the run's notes
        self.remote = remote  # a cache.remote.Remote: asked after the local layers, fed by put
        # `trtforge plan`: a remote record answers a lookup without its blobs being downloaded
        # (what the remote holds is all a plan needs; its artifacts may be gigabytes)
        self.peek = False
        # blobs this process stored or checked in a view: (device, inode, size, mtime) -> digest.
        # A stage that links an upstream output into its outputs (the 1.6 GB weights of an SD1.5
        # UNet pass through graph_passes and precision_rules unchanged) is not hashed again on
        # commit, nor its blob when the next stage's view hands it out: 4.4 s each time on 2
        # cores. A file written since (another size or mtime) is hashed.
        self._checked: dict[tuple[int, int, int, int], str] = {}
        if writable:
            self._open_writable()
        set_memo_root(self.root / "statmemo")

    def _open_writable(self) -> None:
        hint = (
            "pass --cache-dir (or $TRTFORGE_CACHE_DIR) to a writable folder; a read-only cache "
            "can be layered under it with $TRTFORGE_SHARED_CACHE"
        )
        try:
            for sub in SUBDIRS:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(
                f"cannot create the cache: {e.strerror}", where=str(e.filename or self.root), hint=hint
            ) from None
        # os.access is honest about read-only mounts and permissions (for non-root users); it
        # costs microseconds, where finding out at the first lock would leave a traceback
        for folder in (self.root, *(self.root / sub for sub in SUBDIRS)):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise CacheError("the cache folder is read-only", where=str(folder), hint=hint)
        sweep_temps(self.root / "tmp", prefix="")
        sweep_writer_temps(self.root)

    # ---------------------------------------------------------------------------------- paths
    def _blob(self, digest: str, root: Path | None = None) -> Path:
        return (root or self.root) / "blobs" / digest[:2] / digest

    def blob_path(self, digest: str) -> Path:
        """Where a blob lives (read-only; check its digest before trusting it)."""
        return self._blob(digest)

    def _action(self, key: str, root: Path | None = None) -> Path:
        return (root or self.root) / "actions" / key[:2] / f"{key}.json"

    def holds(self, key: str) -> bool:
        """Whether this store's own folder has a sound record for `key` (no shared layer, no remote)."""
        return self.read_record(self._action(key), key) is not None

    # --------------------------------------------------------------------------------- lookup
    def lookup(self, key: str) -> Record | None:
        """The record for `key` if it and all its blobs exist (local first, then shared layers). A
        damaged record (digest or schema) is a miss, noted in `self.notes`; the next put of that
        key replaces it."""
        for root in (self.root, *(() if key in self._forgotten else self.shared)):
            doc = self.read_record(self._action(key, root), key)
            if doc is None:
                continue
            if all(self._blob(o["digest"], root).exists() for o in doc["outputs"].values()):
                if root != self.root:
                    self._adopt(doc, root)
                return Record.of(doc)
        if self.remote is not None and self.peek:
            doc = self.remote.peek(key)  # planning: the record alone, nothing downloaded
            return None if doc is None else Record.of(doc)
        if self.remote is not None:
            doc = self.remote.fetch(key, self)  # downloaded into this store, every blob checked
            self.notes.extend(self.remote.take_notes())
            if doc is not None:
                return Record.of(doc)
        return None

    # ------------------------------------------------------------------------ remote support
    def temp_path(self, label: str) -> Path:
        """A fresh file name under tmp/ (swept if its writer dies)."""
        return self.root / "tmp" / f"{label}.{_owner_tag()}.{os.urandom(4).hex()}"

    def install_blob(self, tmp: Path, digest: str) -> None:
        """Move a downloaded file, already checked against `digest`, into blobs/."""
        install(tmp, self._blob(digest), 0o444)

    def install_record(self, doc: dict, key_doc: bytes | None) -> None:
        """Write a downloaded record (its blobs already installed) and its key document."""
        if key_doc is not None:
            atomic_write_bytes(self._action(doc["key"]).with_suffix(".key.json"), key_doc)
        atomic_write_bytes(self._action(doc["key"]), seal(doc))  # the same bytes: canonical

    def remote_deps_keys(self, base: str) -> list[str]:
        """deps_keys of other runners (the remote's), for when none of this store's applies."""
        return [] if self.remote is None else self.remote.deps_keys(base)

    def read_record(self, path: Path, key: str | None = None) -> dict | None:
        """A record document, checked; None when absent, noted when damaged."""
        try:
            text = path.read_bytes()
        except OSError:
            return None
        try:
            return parse_record(text, key)
        except DamagedRecord as e:
            self.notes.append(f"damaged cache record {path.name[:12]} ignored ({e}); rebuilt")
            return None

    def take_notes(self) -> list[str]:
        notes, self.notes = list(dict.fromkeys(self.notes)), []  # one note per damaged record
        return notes

    def _adopt(self, doc: dict, root: Path) -> None:
        """Link a shared layer's blobs into the local store so views work on one filesystem."""
        for o in doc["outputs"].values():
            local = self._blob(o["digest"])
            if not local.exists():
                mkdir_durable(local.parent)
                try:
                    os.link(self._blob(o["digest"], root), local)
                    fsync_dir(local.parent)
                except FileExistsError:
                    pass  # another process adopted it first
                except OSError:
                    atomic_copy(self._blob(o["digest"], root), local)
        key_doc = self._action(doc["key"], root).with_suffix(".key.json")
        if key_doc.exists():
            atomic_write_bytes(self._action(doc["key"]).with_suffix(".key.json"), key_doc.read_bytes())
        atomic_write_bytes(self._action(doc["key"]), seal(doc))  # the same bytes: canonical

    def key_doc(self, key: str) -> dict | None:
        try:
            return json.loads(self._action(key).with_suffix(".key.json").read_text())
        except (OSError, ValueError):
            return None

    # -------------------------------------------------------------------------------- publish
    @contextlib.contextmanager
    def lock(self, key: str):
        path = self.root / "locks" / f"{key}.lock"
        with open(path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def gc_lock(self, exclusive: bool):
        """Shared while `put` moves blobs in and writes their record; exclusive for gc, so gc never
        collects a blob whose record is about to be written."""
        with open(self.root / "locks" / "gc.lock", "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def workdir(self, label: str):
        """A fresh folder under tmp/ for a stage to write into; removed afterwards."""
        path = Path(tempfile.mkdtemp(prefix=f"{label}.{_owner_tag()}.", dir=self.root / "tmp"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def put(
        self, key: str, stage: str, key_doc: dict, folder: Path, meta: dict, made_by: Provenance | None = None
    ) -> Record:
        """Ingest every file in `folder` as a blob, then write the record (last). `made_by`: the
        module that built it and the files its run loaded (cache/store.py, Provenance)."""
        with self.gc_lock(exclusive=False):
            return self._put(key, stage, key_doc, folder, meta, made_by or Provenance())

    def _put(self, key: str, stage: str, key_doc: dict, folder: Path, meta: dict, made_by: Provenance) -> Record:
        outputs = {}
        for path in sorted(folder.iterdir()):
            if not path.is_file():
                continue
            st = path.stat()
            digest = self._checked.get(_sig(path, st)) or hash_file(path)
            outputs[path.name] = {"digest": digest, "size": st.st_size}
            blob = self._blob(digest)
            if not blob.exists():
                install(path, blob, 0o444)
            with contextlib.suppress(OSError):  # the next stage's view need not hash it again
                self._checked[_sig(blob)] = digest
        checkpoint(f"put:{stage}")
        # the record's digest covers its metadata: a changed value or renamed field is a miss
        doc = seal(
            {
                "key": key,
                "stage": stage,
                "outputs": outputs,
                "meta": meta,
                "created": time.time(),
                "deps": made_by.deps,
                **({"module": made_by.module} if made_by.module else {}),
            }
        )
        atomic_write_bytes(
            self._action(key).with_suffix(".key.json"), json.dumps(key_doc, indent=1, sort_keys=True).encode()
        )
        atomic_write_bytes(self._action(key), doc)
        if self.remote is not None:
            self.remote.push(key, self)  # blobs, then the record: after the stage succeeded
            self.notes.extend(self.remote.take_notes())
            # the remote's record when it held this key first with other artifacts (parity)
            doc = self._action(key).read_bytes()
        return Record.of(json.loads(doc))  # what a later lookup returns, to the byte

    def forget(self, key: str) -> None:
        self._forgotten.add(key)
        with contextlib.suppress(OSError):
            os.unlink(self._action(key))
        shutil.rmtree(self.root / "views" / key, ignore_errors=True)

    # ----------------------------------------------------------------------------------- read
    def view(self, record: Record) -> Path:
        """The record's outputs as a folder of hard links, each blob's digest checked before the
        folder is handed out. Links are made before the check: a new link changes the blob's
        ctime, and checking after it keeps the stat memo valid for the next run (otherwise the
        first no-op after a build re-hashes every engine it publishes)."""
        folder = self.root / "views" / record.key
        for name, o in record.outputs.items():
            blob, link = self._blob(o["digest"]), folder / name
            try:
                if not (link.exists() and os.path.samefile(link, blob)):
                    self._link(blob, link)
                # hashed or checked by this process already (and not written since): the links
                # each stage makes change a blob's ctime, which the stat memo keys on
                actual = self._checked.get(_sig(blob))
                if actual is None:
                    actual = digest_file(blob)
                else:  # the memo follows the new link's ctime: the next run hashes nothing either
                    remember_digest(blob, actual)
            except OSError:
                raise CorruptEntry(record.key, f"{record.stage} {record.key[:12]}: blob for {name} missing") from None
            if actual != o["digest"]:
                for path in (blob, link):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise CorruptEntry(record.key, f"{record.stage} {record.key[:12]}: blob for {name} is corrupt")
            with contextlib.suppress(OSError):
                self._checked[_sig(blob)] = actual
        return folder

    @staticmethod
    def _link(blob: Path, link: Path) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(link)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        try:
            os.link(blob, tmp)
        except FileNotFoundError:
            raise
        except OSError:
            shutil.copyfile(blob, tmp)  # another filesystem: a copy (the blob is still checked)
        os.replace(tmp, link)

    # ----------------------------------------------------------------------- loaded-code keys
    def _deps_file(self, base: str, root: Path | None = None) -> Path:
        return (root or self.root) / "deps" / base[:2] / f"{base}.json"

    def deps_keys(self, base: str) -> list[str]:
        """Keys of the records built from `base` (newest first, then shared layers'): each names
        the files its run loaded, which the driver hashes again to find the key that applies now."""
        keys = []
        for root in (self.root, *self.shared):
            try:
                doc = unseal(self._deps_file(base, root).read_bytes())
            except (OSError, DamagedRecord):
                continue
            found = doc.get("keys")
            if isinstance(found, list):
                keys += [k for k in found if isinstance(k, str) and k not in keys]
        return keys

    def add_deps_key(self, base: str, key: str, push: bool = True) -> None:
        if push and self.remote is not None:
            self.remote.push_deps(base, key)  # before its record, as here: a dangling one is a miss
        keys = self.deps_keys(base)
        if keys[:1] == [key]:
            return
        keys = [key, *[k for k in keys if k != key]][:MAX_DEPS_KEYS]
        atomic_write_bytes(self._deps_file(base), seal({"keys": keys}))

    # ------------------------------------------------------------------------------ planning
    def plan(self, keying: StageKey) -> Plan:
        """Which key applies to one stage of one module now, whether this cache (or a layer under
        it, or the remote) holds it, and what changed since its last build (cache/plan.py)."""
        return plan_stage(self, keying)

    @contextlib.contextmanager
    def claim(self, plan: Plan, force: bool = False) -> Iterator[Plan]:
        """Hold a stage's key while it is built: its per-key lock (parallel builds build it once),
        the gc lock shared, a full disk as one line. Yields the plan again, asked under the lock
        (another process may have built it meanwhile); with `force`, the plan as given."""
        with cache_writes(self.root), self.gc_lock(exclusive=False), self.lock(plan.base):
            yield plan if force else self.plan(plan.keying)

    def commit(self, plan: Plan, folder: Path, meta: dict, made_by: Provenance) -> Plan:
        """Store a stage's outputs (`folder`) under the plan's key; the plan with its record."""
        if plan.keying.tracks:  # first: a pointer to a missing record is only a miss
            self.add_deps_key(plan.base, plan.key)
        return replace(plan, record=self.put(plan.key, plan.keying.stage, plan.doc, folder, meta, made_by))

    def settle(self, plan: Plan, notes: list[str]) -> None:
        """After a stage, hit or built: the notes its lookups left go to `notes`, and its key is
        remembered as the module's last of that stage (`trtforge explain`)."""
        notes.extend(self.take_notes())
        with cache_writes(self.root):
            self.remember(plan.keying.module, plan.keying.stage, plan.key, plan.doc)

    # ------------------------------------------------------------------------------- explain
    def remember(self, module: str, stage: str, key: str, key_doc: dict) -> None:
        last = self.last(module, stage)
        if last is not None and last.get("key") == key:
            return  # a no-op build writes nothing
        atomic_write_bytes(self.root / "index" / module / f"{stage}.json", seal({"key": key, "doc": key_doc}))

    def pin(self, module: str, target: str, keys: dict[str, str]) -> None:
        """The records behind a published entry (module, target): `cache gc` never drops them,
        whichever target the last build built (index/<module>/<stage>@<target>.json)."""
        for stage, key in sorted(keys.items()):
            self.remember(module, f"{stage}{PIN}{target}", key, {"published": f"{target}/{module}"})

    def unpin(self, module: str, target: str) -> None:
        """The entry was withdrawn (it failed, or left the manifest): its records may go."""
        folder = self.root / "index" / module
        for path in folder.glob(f"*{PIN}{target}.json") if folder.is_dir() else ():
            path.unlink(missing_ok=True)

    def last(self, module: str, stage: str) -> dict | None:
        """The last key and key document of this module and stage; None when absent or damaged
        (explain then says "never built", and the next build rewrites it)."""
        try:
            return parse_index((self.root / "index" / module / f"{stage}.json").read_bytes())
        except (OSError, DamagedRecord):
            return None

    # ------------------------------------------------------------------------------- manage
    def records(self):
        from trtforge.cache.manage import records

        return records(self.root)

    def verify_all(self) -> list[str]:
        from trtforge.cache.manage import verify_all

        return verify_all(self)

    def gc(self, max_bytes: int | None = None, older_than_s: float | None = None) -> dict:
        from trtforge.cache.manage import gc

        return gc(self, max_bytes, older_than_s)
