"""Self-verifying cache metadata: every record (and index entry) carries the SHA-256 of its own
canonical JSON, so a changed value, a renamed or missing field or a truncated file is detected
when read. A damaged document is never used: the caller treats it as a miss and says so.

Blobs are checked against their digest on read (store.view); records are checked here, so nothing
in the cache is trusted beyond a digest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from trtforge.artifacts import NOT_KEYED
from trtforge.cache.keys import canonical_json, digest_bytes

PIN = "@"  # index/<module>/<stage>@<target>.json: a record behind a published entry (Store.pin)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class DamagedRecord(Exception):
    """A record or index entry that fails its digest or its schema; the message says which."""


@dataclass(frozen=True)
class Record:
    key: str
    stage: str
    outputs: dict  # name -> {"digest": str, "size": int}
    meta: dict
    # what the key was computed from, besides settings (thousands of file digests: not in repr)
    deps: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, doc: dict) -> Record:
        return cls(
            key=doc["key"], stage=doc["stage"], outputs=doc["outputs"], meta=doc["meta"], deps=doc.get("deps", {})
        )

    def digests(self) -> dict:
        """The artifacts' digests, as later stages' keys name them: the log and the grown timing
        cache left out (artifacts.NOT_KEYED: no later stage reads them, and they differ on
        every run, so a later stage on another runner would miss)."""
        return {name: o["digest"] for name, o in sorted(self.outputs.items()) if name not in NOT_KEYED}


_TAIL = re.compile(r',?"digest":"([0-9a-f]{64})"\}$')


def seal(doc: dict) -> bytes:
    """`doc` as canonical JSON with a last field, `digest`, the SHA-256 of the JSON before it. The
    reader hashes the bytes it read (a record holding a stage's loaded-file list is ~300 KB: re-
    serialising it to check would cost more than parsing it)."""
    body = canonical_json({k: v for k, v in doc.items() if k != "digest"})
    digest = digest_bytes(body.encode())
    return (body[:-1] + ("," if body != "{}" else "") + f'"digest":"{digest}"}}').encode()


def unseal(data: bytes | str) -> dict:
    """The document if its digest matches the bytes before it; DamagedRecord otherwise."""
    try:
        text = data.decode() if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise DamagedRecord("not UTF-8") from None
    tail = len(text) - 80  # the digest field is last: search only there (records reach ~300 KB)
    m = _TAIL.search(text, max(tail, 0))
    if m is None:
        raise DamagedRecord("no digest field")
    body = text[: m.start()] + "}"
    if digest_bytes(body.encode()) != m.group(1):
        raise DamagedRecord("its digest does not match its content")
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise DamagedRecord(f"not JSON ({e.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("digest") != m.group(1):
        raise DamagedRecord("not a JSON object with one digest")
    return doc


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise DamagedRecord(what)


def parse_record(text: str | bytes, key: str | None = None) -> dict:
    """An action record, digest and schema checked: key, stage, outputs (name -> digest, size),
    meta, created, deps. `key` (from the file name) must match the record's own."""
    doc = unseal(text)
    _need(isinstance(doc.get("key"), str) and bool(_HEX64.match(doc["key"])), "bad or missing 'key'")
    _need(key is None or doc["key"] == key, "its key is not its file name")
    _need(isinstance(doc.get("stage"), str), "bad or missing 'stage'")
    outputs = doc.get("outputs")
    _need(isinstance(outputs, dict), "bad or missing 'outputs'")
    for name, o in (outputs or {}).items():
        _need(
            isinstance(o, dict)
            and isinstance(o.get("digest"), str)
            and bool(_HEX64.match(o["digest"]))
            and isinstance(o.get("size"), int)
            and not isinstance(o.get("size"), bool),
            f"bad output entry '{name}'",
        )
    _need(isinstance(doc.get("meta"), dict), "bad or missing 'meta'")
    _need(
        isinstance(doc.get("created"), (int, float)) and not isinstance(doc.get("created"), bool),
        "bad or missing 'created'",
    )
    _need(isinstance(doc.get("deps", {}), dict), "bad 'deps'")
    return doc


def parse_index(text: str | bytes) -> dict:
    """An index entry: the last key and key document of one module and stage."""
    doc = unseal(text)
    _need(isinstance(doc.get("key"), str) and bool(_HEX64.match(doc["key"])), "bad or missing 'key'")
    _need(isinstance(doc.get("doc"), dict), "bad or missing 'doc'")
    return doc
