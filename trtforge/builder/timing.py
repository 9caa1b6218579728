"""The builder's timing cache: tactic timings a TensorRT build measured, reused by the next build
of the same target so a rebuild after a small model change does not time every tactic again.

It grows with every build, so it is never part of a key: each build record carries the cache as
it left the builder (`timing.cache`, an output like the engine) and its digest in the record's
metadata and the sidecar; the driver keeps, per target, a pointer to the newest one and seeds the
next build of that target with it (trtforge/driver/timing.py). A stale or foreign cache costs
nothing but time: TensorRT ignores entries that do not match (ignore_mismatch).
"""

from __future__ import annotations

from pathlib import Path

from trtforge.cache.keys import hash_file

FILE = "timing.cache"


def with_timing_cache(config, seed: Path | None, holder: list):
    """Wrap a polygraphy config loader: the built IBuilderConfig gets a timing cache made from
    `seed` (empty when None), and lands in `holder` so the cache can be saved after the build."""

    def load(builder, network):
        cfg = config(builder, network)
        data = seed.read_bytes() if seed is not None else b""
        cache = cfg.create_timing_cache(data)
        cfg.set_timing_cache(cache, True)  # ignore_mismatch: a cache from another device is skipped
        holder.append(cfg)
        return cfg

    return load


def save(holder: list, dest: Path, seed: Path | None) -> dict | None:
    """Write the builder's timing cache after the build; its digest and size for the metadata."""
    if not holder:
        return None
    cache = holder[-1].get_timing_cache()
    if cache is None:
        return None
    dest.write_bytes(memoryview(cache.serialize()))
    return {
        "digest": hash_file(dest),
        "bytes": dest.stat().st_size,
        "seeded_from": hash_file(seed) if seed is not None else None,
    }
