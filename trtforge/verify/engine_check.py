"""Run an engine where it can run: TensorRT runtime through polygraphy's TrtRunner, which copies
inputs and executes on one CUDA stream (a copy on the default stream and execution on another once
produced stale reads that looked like a precision bug). Where it cannot run, say exactly why."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import numpy as np

from trtforge import backends as be


def why_not_runnable(build_meta: dict) -> str | None:
    gpus = be.gpus()
    backend = build_meta["backend"]
    if not gpus:
        return "no NVIDIA GPU on this machine"
    gpu = gpus[0]
    targets = build_meta["target"]["compute_capabilities"]
    # the GPU first: on a GPU the engine can never run on, installing the runtime would not help
    if gpu.compute_capability not in targets:
        extra = (
            " (TensorRT-RTX does not run on Hopper)" if gpu.compute_capability == "9.0" and backend == be.RTX else ""
        )
        return (
            f"{backend} engine built for sm{', sm'.join(c.replace('.', '') for c in targets)}; "
            f"this GPU ({gpu.name}, sm{gpu.compute_capability.replace('.', '')}) is not among them{extra}"
        )
    if not be.installed(backend):
        return f"{backend} is not installed here (pip install 'trtforge[{be.EXTRA[backend]}]')"
    if backend == be.TRT and build_meta["target"].get("gpu") != gpu.name:
        return f"engine built for {build_meta['target'].get('gpu')}, this GPU is {gpu.name}"
    return None


def profile_of(feeds: dict, profiles: list[dict] | None) -> int:
    """The first optimization profile whose [min, max] holds every input's shape (0 when the
    engine has none, or none holds it: the runtime then says why it refuses the shapes)."""
    for i, shapes in enumerate(profiles or []):
        if all(
            name not in feeds or all(lo <= d <= hi for lo, d, hi in zip(pts["min"], feeds[name].shape, pts["max"]))
            for name, pts in shapes.items()
        ):
            return i
    return 0


def run_engine_sets(
    engine_path: Path, feed_sets: list[dict], backend: str, runs: int = 50, profiles: list[dict] | None = None
) -> tuple[list, dict]:
    """Outputs for every feed set from one deserialised engine, each run under the optimization
    profile that holds its shapes (`profiles`: the build's [{input: {min, opt, max}}]); latency
    p50/p99 on the first set, after warm-up."""
    be.select(backend)
    # polygraphy's logger (TensorRT's too, through it) prints to stdout, at import and as the
    # engine loads: on stderr it never mixes with what trtforge prints (`verify --json`)
    with contextlib.redirect_stdout(sys.stderr):
        return _run_sets(engine_path, feed_sets, runs, profiles)


def _run_sets(engine_path: Path, feed_sets: list[dict], runs: int, profiles: list[dict] | None) -> tuple[list, dict]:
    from polygraphy.backend.common import bytes_from_path
    from polygraphy.backend.trt import TrtRunner, engine_from_bytes

    engine = engine_from_bytes(bytes_from_path(str(engine_path)))
    with TrtRunner(engine) as runner:
        outputs = []
        for feeds in feed_sets:
            if len(profiles or []) > 1:
                runner.set_profile(profile_of(feeds, profiles))
            outputs.append({k: np.array(v) for k, v in runner.infer(feeds).items()})
        if len(profiles or []) > 1:
            runner.set_profile(profile_of(feed_sets[0], profiles))
        for _ in range(5):  # warm-up
            runner.infer(feed_sets[0])
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            runner.infer(feed_sets[0])
            times.append((time.perf_counter() - t0) * 1e3)
    latency = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))} if times else {}
    return outputs, latency
