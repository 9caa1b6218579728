"""`trtforge build [--jobs N]`: each module built, checked and published, N modules at once.

Processes, not threads: a stage redirects stdout and picks its TensorRT family per process
(polygraphy reads that once, at import). The per-key locks of the store make N workers, `make -j`
and unrelated processes build each artifact once; results come back in manifest order.
"""

from __future__ import annotations

import contextlib
import os
import threading

from trtforge.cache import testhooks
from trtforge.cache.testhooks import checkpoint
from trtforge.driver.context import RunContext, WorkerJob
from trtforge.driver.lifecycle import build_targets
from trtforge.driver.results import ModuleResult
from trtforge.manifest import ModuleSpec
from trtforge.processes import interrupts, isolate

_EVENTS = None  # in a worker: the queue its progress events go to (set by _init_worker)


class QueuedProgress:
    """A worker's progress: each stage's start and end sent to the parent, which shows them (a
    worker's own lines would interleave with the others')."""

    def __init__(self, queue):
        self.queue = queue

    def start(self, module: str, stage: str) -> None:
        self.queue.put(("start", module, stage, 0.0, None))

    def done(self, module: str, stage: str, seconds: float, rss_mib: float | None = None) -> None:
        self.queue.put(("done", module, stage, seconds, rss_mib))


def _forward(queue, progress) -> None:
    """In the parent: show the workers' events until the sentinel None."""
    while (event := queue.get()) is not None:
        kind, module, stage, seconds, rss_mib = event
        if kind == "start":
            progress.start(module, stage)
        else:
            progress.done(module, stage, seconds, rss_mib)


def _worker(job: WorkerJob, name: str) -> list[ModuleResult]:
    ctx = job.context(QueuedProgress(_EVENTS) if _EVENTS is not None else None)
    return build_targets(ctx, ctx.manifest.module(name))


def usable_cores() -> int:
    """The CPU cores this process may run on (a container's or taskset's share, not the host's)."""
    pretend = testhooks.cores()
    if pretend is not None:  # test hook: the worker tests need workers on a 2-core machine
        return pretend
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# measured on the example manifest (3 modules, cold cache, 2 cores shared with other work):
# --jobs 1 took 59.7-150.9 s, --jobs 2 82.0-176.0 s (README, "--jobs"): two workers on two cores
# were not reliably faster. Likely why: a module's stages keep more than one core busy (ONNX Runtime and the TensorRT
# builder size their thread pools to the machine; every worker imports torch and ONNX Runtime again).
CORES_PER_JOB = 2


def effective_jobs(jobs: int, modules: int, cores: int | None = None) -> tuple[int, str | None]:
    """The number of workers, and a note when it is fewer than asked: never more workers than
    modules, nor than one per CORES_PER_JOB cores (at least one)."""
    cores = cores or usable_cores()
    cap = max(1, cores // CORES_PER_JOB)
    n = max(1, min(jobs, modules))
    if n <= cap:
        return n, None
    return cap, (
        f"--jobs {jobs}: running {cap} at a time; this machine has {cores} CPU core(s) and each module's "
        f"stages keep more than one busy (more workers measured no faster; see README, '--jobs')"
    )


def build_modules(ctx: RunContext, modules: list[ModuleSpec]):
    """Yield each module's result (one per target) in manifest order, `ctx.request.jobs` modules
    at once (the caller has applied effective_jobs)."""
    jobs, progress = ctx.request.jobs, ctx.progress
    if jobs <= 1 or len(modules) <= 1:
        for module in modules:
            yield from build_targets(ctx, module)
        return
    import multiprocessing  # here, not at the top: a no-op build never needs them
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a forked worker would inherit whatever the parent imported, polygraphy's choice
    # included; workers send their progress to the parent, which prints it (no interleaved lines)
    context = multiprocessing.get_context("spawn")
    events = context.Queue() if progress is not None else None
    forwarder = threading.Thread(target=_forward, args=(events, progress), daemon=True) if events else None
    if forwarder is not None:
        forwarder.start()
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_init_worker,
        initargs=(os.getpid(), events, isolate.MAX_MEMORY),
    )
    try:
        job = WorkerJob.of(ctx)
        futures = [pool.submit(_worker, job, m.name) for m in modules]
        checkpoint("jobs:submitted")
        for future in futures:
            yield from future.result()
    except BaseException:
        # interrupted (or a bug): the workers stop now, not after their current module; each
        # handles SIGTERM like the CLI (nothing half-built kept) and the pool is then joined
        for proc in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(OSError, ValueError):
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        if events is not None and forwarder is not None:
            events.put(None)
            forwarder.join(timeout=5)
            events.close()  # its semaphores and feeder thread go now, not at interpreter exit
            events.join_thread()
    pool.shutdown(wait=True)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _init_worker(parent: int, events=None, max_memory: int | None = None) -> None:
    """In each worker, first: die with the parent whatever kills it (a SIGKILLed parent runs no
    cleanup, and orphaned workers went on building for minutes, 600 MB each). The kernel sends
    SIGKILL when the parent exits (prctl PR_SET_PDEATHSIG); a parent that died before this line
    ran is caught by the pid check. Then SIGINT/SIGTERM end the worker's stage like the CLI's."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
    testhooks.PARENT = parent
    isolate.MAX_MEMORY = max_memory  # --max-memory: the parent's budget holds in every worker
    global _EVENTS
    _EVENTS = events
    interrupts.install()
