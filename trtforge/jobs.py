"""`trtforge build --jobs N`: modules built by N worker processes on one cache.

Processes, not threads: a stage redirects stdout and picks its TensorRT family per process
(polygraphy reads that once, at import). The per-key locks of the store make N workers, `make -j`
and unrelated processes build each artifact once; results come back in manifest order.
"""

from __future__ import annotations

from pathlib import Path

from trtforge.cache import Store
from trtforge.manifest import Manifest, ModuleSpec, load_manifest
from trtforge.pipeline import ModuleResult, build_module


def build_and_publish(store: Store, manifest: Manifest, module: ModuleSpec,
                      backend: str | None) -> ModuleResult:
    from trtforge.publish import publish_result

    result = build_module(store, manifest, module, backend)
    if "build" in result.records:
        result = publish_result(store, manifest, module, result, backend)
    return result


def _worker(manifest_path: str, name: str, root: str, shared: tuple, backend: str | None) -> ModuleResult:
    manifest = load_manifest(manifest_path)
    return build_and_publish(Store(Path(root), shared=shared), manifest, manifest.module(name), backend)


def build_all(store: Store, manifest: Manifest, modules: list[ModuleSpec], backend: str | None,
              jobs: int, on_start=lambda module: None):
    """Yield each module's result in manifest order."""
    if jobs <= 1 or len(modules) <= 1:
        for module in modules:
            on_start(module)
            yield build_and_publish(store, manifest, module, backend)
        return
    import multiprocessing  # here, not at the top: a no-op build never needs them
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a forked worker would inherit whatever the parent imported, polygraphy's choice included
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = []
        for module in modules:
            on_start(module)
            futures.append(pool.submit(_worker, str(manifest.path), module.name, str(store.root),
                                       store.shared, backend))
        for future in futures:
            yield future.result()
