"""Planning one stage against the cache: which key applies now, whether the cache holds it, and
what changed since the module's last build of that stage. The driver asks once (`Store.plan`);
the bookkeeping behind the answer stays here:

- a stage keyed on its settings and inputs alone has one key, looked up;
- a stage keyed on the code its run loaded (export: the factory's imports) has a base key
  (settings and inputs) and, per earlier run, a key that adds the files that run loaded, hashed as
  they are now. The records built from a base are listed under deps/<base>.json (newest first);
  the first whose files still hash the same is the hit. The module's last record comes next (its
  files are what `explain` compares when the settings changed too), then other runners' lists
  (the remote: asked only when no local one applies, so a no-op build never lists the remote).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from trtforge.cache.records import Record
from trtforge.errors import InternalError


@dataclass(frozen=True)
class StageKey:
    """How one stage of one module is keyed: `compute(deps)` gives the key and key document for a
    set of loaded files (None: the base key, settings and inputs alone); `tracks`: whether the
    stage is keyed on the code its run loaded. `module` and `stage` name the index entry that
    remembers the last build (`trtforge explain`)."""

    module: str
    stage: str
    compute: Callable[[dict | None], tuple[str, dict]] = field(repr=False)
    tracks: bool = False


@dataclass(frozen=True)
class Plan:
    """A stage's key now: `key`/`doc` to build under (for a stage keyed on loaded code, with the
    files of the newest earlier record), `record` when the cache holds it (a hit), `last` the key
    document of the module's last build of this stage (None: never built with this cache; not read
    for a hit of a stage keyed on settings and inputs alone)."""

    keying: StageKey = field(repr=False)
    base: str
    key: str
    doc: dict = field(repr=False)
    record: Record | None = None
    last: dict | None = field(default=None, repr=False)

    @property
    def hit(self) -> bool:
        return self.record is not None

    @property
    def changes(self) -> list[str]:
        """The key fields that changed since the last build ("path: old -> new"); empty for a hit,
        a stage never built, or an entry that is missing although its key did not change."""
        if self.hit or self.last is None:
            return []
        return diff(self.last.get("doc", {}), self.doc)

    def require(self) -> Record:
        """The record (a hit, or stored by commit); a plan without one here is a bug."""
        if self.record is None:
            raise InternalError(f"{self.keying.stage} {self.key[:12]}: no record where one was stored")
        return self.record

    def rekeyed(self, deps: dict | None, record: Record | None = None) -> Plan:
        """This plan under the key its run's loaded files give (a tracking stage, after it ran)."""
        key, doc = (self.key, self.doc) if not self.keying.tracks else self.keying.compute(deps)
        return Plan(self.keying, self.base, key, doc, record, self.last)


def plan(store, keying: StageKey) -> Plan:
    """`store`: a cache.store.Store (untyped here: the store imports this module)."""
    base, doc = keying.compute(None)
    if not keying.tracks:  # a hit reads no index entry: a no-op build reads it once, to remember
        record = store.lookup(base)
        return Plan(keying, base, base, doc, record, None if record else store.last(keying.module, keying.stage))
    last = store.last(keying.module, keying.stage)
    newest = None
    for key in dict.fromkeys([*store.deps_keys(base), *([last["key"]] if last else [])]):
        found = _applies(store, keying, base, key, last)
        if isinstance(found, Plan) and found.hit:
            return found
        newest = newest or found  # the newest: what explain compares with
    for key in store.remote_deps_keys(base):
        found = _applies(store, keying, base, key, last)
        if isinstance(found, Plan) and found.hit:
            store.add_deps_key(base, key, push=False)
            return found
    return newest or Plan(keying, base, base, doc, None, last)


def _applies(store, keying: StageKey, base: str, key: str, last: dict | None) -> Plan | None:
    """The plan under record `key`'s loaded files as they hash now: a hit when that gives `key`
    again; None when the cache holds no such record."""
    rec = store.lookup(key)
    if rec is None:
        return None
    now_key, now_doc = keying.compute(rec.deps)
    return Plan(keying, base, now_key, now_doc, rec if now_key == rec.key else None, last)


def flatten(doc: object, prefix: str = "") -> dict:
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(doc, (list, tuple)) and doc:
        out = {}
        for i, v in enumerate(doc):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: doc}


def diff(old: dict, new: dict) -> list[str]:
    """Key documents compared field by field: "path: old -> new" per changed leaf."""
    a, b = flatten(old), flatten(new)
    return [
        f"{k}: {_short(a.get(k, '<absent>'))} -> {_short(b.get(k, '<absent>'))}"
        for k in sorted(set(a) | set(b))
        if a.get(k, "<absent>") != b.get(k, "<absent>")
    ]


def _short(v: object) -> str:
    text = str(v)
    return text if len(text) <= 70 else text[:67] + "..."
