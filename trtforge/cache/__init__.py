"""Content-addressed artifact cache: canonical keys, blobs by digest, action records by key."""

from trtforge.cache.keys import canonical_json, digest_bytes, digest_file, key_of
from trtforge.cache.records import Record
from trtforge.cache.store import Provenance, Store

__all__ = ["Provenance", "Record", "Store", "canonical_json", "digest_bytes", "digest_file", "key_of"]
