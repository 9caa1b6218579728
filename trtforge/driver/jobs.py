"""`trtforge build [--jobs N]`: each module built, checked and published, N modules at once.

Processes, not threads: a stage redirects stdout and picks its TensorRT family per process
(polygraphy reads that once, at import). The per-key locks of the store make N workers, `make -j`
and unrelated processes build each artifact once; results come back in manifest order.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from trtforge import interrupts
from trtforge.cache import Store, testhooks
from trtforge.cache.testhooks import checkpoint
from trtforge.driver.lifecycle import build_targets
from trtforge.driver.results import ModuleResult
from trtforge.manifest import Manifest, ModuleSpec, load_manifest


def _worker(manifest_path: str, name: str, root: str, shared: tuple, remote, targets: tuple,
            backend: str | None, require_engine_check: bool, force_from: str | None,
            require_target: bool) -> list[ModuleResult]:
    from trtforge.cache.remote import Remote

    manifest = load_manifest(manifest_path)
    store = Store(Path(root), shared=shared, remote=None if remote is None else Remote(remote))
    return build_targets(store, manifest, manifest.module(name), targets, backend, None, require_engine_check,
                         force_from, require_target)


def build_all(store: Store, manifest: Manifest, modules: list[ModuleSpec], backend: str | None,
              jobs: int = 1, progress=None, require_engine_check: bool = False, force_from: str | None = None,
              targets: tuple = (), require_target: bool = False):
    """Yield each module's result (one per target) in manifest order."""
    if jobs <= 1 or len(modules) <= 1:
        for module in modules:
            yield from build_targets(store, manifest, module, targets, backend, progress, require_engine_check,
                                     force_from, require_target)
        return
    import multiprocessing  # here, not at the top: a no-op build never needs them
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a forked worker would inherit whatever the parent imported, polygraphy's choice
    # included; workers print no progress (their stages' lines would interleave)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))
    try:
        remote = None if store.remote is None else store.remote.config
        futures = [pool.submit(_worker, str(manifest.path), m.name, str(store.root), store.shared, remote,
                               targets, backend, require_engine_check, force_from, require_target)
                   for m in modules]
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
    pool.shutdown(wait=True)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _init_worker(parent: int) -> None:
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
    interrupts.install()
