"""`trtforge build [--jobs N]`: each module built, checked and published, N modules at once.

Processes, not threads: a stage redirects stdout and picks its TensorRT family per process
(polygraphy reads that once, at import). The per-key locks of the store make N workers, `make -j`
and unrelated processes build each artifact once; results come back in manifest order.
"""

from __future__ import annotations

from pathlib import Path

from trtforge.cache import Store
from trtforge.errors import PublishError
from trtforge.manifest import Manifest, ModuleSpec, load_manifest
from trtforge.pipeline import ModuleResult, build_module, enforce_engine_check


def build_and_publish(store: Store, manifest: Manifest, module: ModuleSpec, backend: str | None,
                      progress=None, require_engine_check: bool = False) -> ModuleResult:
    from trtforge.publish import publish_result

    # the gc lock shared for the whole module: `cache gc` waits until every record and view this
    # build reads (its own earlier stages, then publish) is no longer needed, instead of
    # collecting a finished stage's blobs before the next stage reads them
    with store.gc_lock(exclusive=False):
        result = build_module(store, manifest, module, backend, progress=progress)
        if require_engine_check:
            enforce_engine_check(result)
        try:  # a failed module is withdrawn: engines/ never keeps what the manifest no longer verifies
            result = publish_result(store, manifest, module, result, backend)
        except PublishError as e:  # this module only: the others still build and report
            if result.error is None:
                result.error = e
            else:  # the module's own failure stays the one reported
                result.notes.append(f"could not withdraw its previous files: {e.one_line()}")
    return result


def _worker(manifest_path: str, name: str, root: str, shared: tuple, backend: str | None,
            require_engine_check: bool) -> ModuleResult:
    manifest = load_manifest(manifest_path)
    return build_and_publish(Store(Path(root), shared=shared), manifest, manifest.module(name), backend,
                             None, require_engine_check)


def build_all(store: Store, manifest: Manifest, modules: list[ModuleSpec], backend: str | None,
              jobs: int = 1, progress=None, require_engine_check: bool = False):
    """Yield each module's result in manifest order."""
    if jobs <= 1 or len(modules) <= 1:
        for module in modules:
            yield build_and_publish(store, manifest, module, backend, progress, require_engine_check)
        return
    import multiprocessing  # here, not at the top: a no-op build never needs them
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a forked worker would inherit whatever the parent imported, polygraphy's choice
    # included; workers print no progress (their stages' lines would interleave)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_worker, str(manifest.path), m.name, str(store.root), store.shared, backend,
                               require_engine_check) for m in modules]
        for future in futures:
            yield future.result()
