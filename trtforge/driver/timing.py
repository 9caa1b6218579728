"""Per-target timing caches in the trtforge cache: `timing/<target>.json` (sealed) names the
newest build record's `timing.cache` blob for that target; the remote cache shares the records,
so a runner that has none yet seeds from the record another runner uploaded (the pointer travels
as a record of its own stage, `timing`, keyed by the target name).

Nothing here is part of a key: a timing cache only makes a build faster."""

from __future__ import annotations

from pathlib import Path

from trtforge.builder.timing import FILE
from trtforge.cache import Record, Store, key_of
from trtforge.cache.store import CorruptEntry


def pointer_key(target: str) -> str:
    return key_of({"stage": "timing", "target": target})


def seed(store: Store, target: str) -> Path | None:
    """The newest timing cache of `target` (local, else the remote's), checked by digest; None
    when there is none yet."""
    record = store.lookup(pointer_key(target))
    if record is None or FILE not in record.outputs:
        return None
    try:
        return store.view(record) / FILE
    except CorruptEntry as e:
        store.forget(e.key)
        return None


def remember(store: Store, target: str, build: Record) -> None:
    """Point `target`'s timing cache at the one `build` produced (a pointer record of one file,
    the same blob: stored, and uploaded, like any record)."""
    if FILE not in build.outputs:
        return
    current = store.lookup(pointer_key(target))
    if current is not None and current.outputs.get(FILE) == build.outputs[FILE]:
        return
    with store.workdir("timing") as wd:
        (wd / FILE).write_bytes((store.view(build) / FILE).read_bytes())  # small: KB to a few MB
        store.put(
            pointer_key(target),
            "timing",
            {"stage": "timing", "target": target},
            wd,
            {"target": target, "from_build": build.key},
        )
