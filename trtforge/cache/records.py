"""Self-verifying cache metadata: every record (and index entry) carries the SHA-256 of its own
canonical JSON, so a changed value, a renamed or missing field or a truncated file is detected
when read. A damaged document is never used: the caller treats it as a miss and says so.

Blobs are checked against their digest on read (store.view); records are checked here, so nothing
in the cache is trusted beyond a digest.
"""

from __future__ import annotations

import json
import re

from trtforge.cache.keys import key_of

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class DamagedRecord(Exception):
    """A record or index entry that fails its digest or its schema; the message says which."""


def seal(doc: dict) -> dict:
    """`doc` with a `digest` field covering every other field."""
    body = {k: v for k, v in doc.items() if k != "digest"}
    return {**body, "digest": key_of(body)}


def unseal(text: str | bytes) -> dict:
    """The document if it parses and its digest matches; DamagedRecord otherwise."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise DamagedRecord(f"not JSON ({e.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise DamagedRecord("not a JSON object")
    digest = doc.get("digest")
    if not isinstance(digest, str):
        raise DamagedRecord("no digest field")
    try:
        actual = key_of({k: v for k, v in doc.items() if k != "digest"})
    except (TypeError, ValueError):
        raise DamagedRecord("not canonical JSON") from None
    if actual != digest:
        raise DamagedRecord("its digest does not match its content")
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
    for name, o in outputs.items():
        _need(isinstance(o, dict) and isinstance(o.get("digest"), str) and bool(_HEX64.match(o["digest"]))
              and isinstance(o.get("size"), int) and not isinstance(o.get("size"), bool),
              f"bad output entry '{name}'")
    _need(isinstance(doc.get("meta"), dict), "bad or missing 'meta'")
    _need(isinstance(doc.get("created"), (int, float)) and not isinstance(doc.get("created"), bool),
          "bad or missing 'created'")
    _need(isinstance(doc.get("deps", {}), dict), "bad 'deps'")
    return doc


def parse_index(text: str | bytes) -> dict:
    """An index entry: the last key and key document of one module and stage."""
    doc = unseal(text)
    _need(isinstance(doc.get("key"), str) and bool(_HEX64.match(doc["key"])), "bad or missing 'key'")
    _need(isinstance(doc.get("doc"), dict), "bad or missing 'doc'")
    return doc
