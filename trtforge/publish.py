"""Publish verified engines: engines/<target>/<module>.engine + <module>.json sidecar + the bundle
(inputs and caller-view reference) that `trtforge verify` needs on the target machine.

Each file: temp name in the destination folder, fsync, os.replace. The sidecar is written last.
An engine that failed verification is never published, and an older one of the same module is
withdrawn so the folder never shows an engine the current manifest did not verify."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path

from trtforge import __version__, interrupts
from trtforge.cache import Store, digest_file
from trtforge.cache.store import CorruptEntry, atomic_copy, atomic_write_bytes, fsync_dir, sweep_temps
from trtforge.cache.testhooks import checkpoint
from trtforge.errors import PublishError
from trtforge.manifest import Manifest, ModuleSpec
from trtforge.pipeline import ModuleResult, build_module

# the sidecar first: withdrawing it first means a crash part-way never leaves one that vouches
# for files it does not describe
SUFFIXES = (".json", ".engine", ".inputs.npz", ".reference.npz")
# Test hook: TRTFORGE_TEST_ENOSPC=publish makes the sidecar write (the last one) fail as a full
# disk would, after the engine was copied, to prove that a failed publish withdraws what it wrote.
TEST_ENOSPC = "TRTFORGE_TEST_ENOSPC"


def _withdraw(folder: Path, name: str) -> None:
    for suffix in SUFFIXES:
        with contextlib.suppress(OSError):
            (folder / f"{name}{suffix}").unlink(missing_ok=True)


def _unchanged(dest: Path, digest: str) -> bool:
    return dest.exists() and digest_file(dest) == digest


def publish(store: Store, result: ModuleResult, out_dir: Path, module: ModuleSpec) -> list[Path]:
    build = result.records["build"]
    target = build.meta["target"]["name"]
    folder = out_dir / target
    name = result.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not result.ok:
            for suffix in SUFFIXES:
                (folder / f"{name}{suffix}").unlink(missing_ok=True)
            _remove_random_sets(folder, name, keep=())
            fsync_dir(folder)
            return []
        bview, eview = store.view(build), store.view(result.records["export"])
        files = {f"{name}.engine": (bview / "model.engine", build.outputs["model.engine"]["digest"]),
                 f"{name}.inputs.npz": (eview / "caller_inputs.npz",
                                        result.records["export"].outputs["caller_inputs.npz"]["digest"]),
                 f"{name}.reference.npz": (eview / "caller_reference.npz",
                                           result.records["export"].outputs["caller_reference.npz"]["digest"])}
        files.update(_random_sets(result, eview, name))
        sweep_temps(folder, prefix=f".{name}.")
        side = folder / f"{name}.json"
        stale = [(src, folder / f, d) for f, (src, d) in files.items() if not _unchanged(folder / f, d)]
        if stale and side.exists():
            # the old sidecar describes the old engine: withdraw it before any file changes, so a
            # sidecar on disk always matches the files beside it, whatever point a crash hits
            side.unlink()
            fsync_dir(folder)
        _remove_random_sets(folder, name, keep=files)
        for src, dest, _ in stale:
            atomic_copy(src, dest)
        checkpoint("publish")
        sidecar = sidecar_doc(result, {f: d for f, (_, d) in files.items()}, module)
        data = json.dumps(sidecar, indent=1, sort_keys=True).encode()
        if not side.exists() or side.read_bytes() != data:
            if os.environ.get(TEST_ENOSPC) == "publish":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(side))
            atomic_write_bytes(side, data)
    except OSError as e:
        # an engine without its matching sidecar must not stay: it would pass for a verified one
        _withdraw(folder, name)
        raise PublishError(f"cannot write: {e.strerror}", where=str(e.filename or folder), module=name,
                           hint="free space or make the output folder writable, then run again; "
                                "nothing was published and the cache is intact") from None
    return [folder / f for f in (*files, f"{name}.json")]


def publish_result(store: Store, manifest: Manifest, module: ModuleSpec, result: ModuleResult,
                   backend: str | None = None) -> ModuleResult:
    """Publish; a blob found corrupt while copying it out is forgotten and its stage rebuilt once."""
    for attempt in range(2):
        try:
            # gc must not drop the views being copied out; a signal waits for the few renames
            # to finish (raised on leaving), so engine and sidecar always agree
            with store.gc_lock(exclusive=False), interrupts.deferred():
                result.published = publish(store, result, manifest.output_dir, module)
            return result
        except CorruptEntry as e:
            if attempt:
                raise
            store.forget(e.key)
            notes = [*result.notes, f"corrupt cache entry forgotten and rebuilt: {e}"]
            result = build_module(store, manifest, module, backend)
            result.notes[:0] = notes
            if "build" not in result.records:
                return result
    return result


def _random_sets(result: ModuleResult, eview: Path, name: str) -> dict:
    """The seeded random input sets (verify.random_inputs) travel with the bundle, so
    `trtforge verify` on the target checks them too: <module>.inputs.r1.npz + .reference.r1.npz."""
    outputs = result.records["export"].outputs
    files = {}
    for fname in sorted(outputs):
        for stem, dest in (("caller_inputs", "inputs"), ("caller_reference", "reference")):
            if fname.startswith(f"{stem}.r") and fname.endswith(".npz"):
                tag = fname[len(stem):-len(".npz")]  # ".r1"
                files[f"{name}.{dest}{tag}.npz"] = (eview / fname, outputs[fname]["digest"])
    return files


def _remove_random_sets(folder: Path, name: str, keep) -> None:
    for pattern in (f"{name}.inputs.r*.npz", f"{name}.reference.r*.npz"):
        for path in folder.glob(pattern):
            if path.name not in keep:
                path.unlink(missing_ok=True)


def sidecar_doc(result: ModuleResult, digests: dict, module: ModuleSpec) -> dict:
    build = result.records["build"].meta
    prec = result.records["precision_rules"].meta
    verify = result.records["verify"].meta
    return {
        "trtforge": __version__, "module": result.name,
        "backend": build["backend"], "backend_version": build["backend_version"],
        "target": build["target"], "io": build["io"],
        "fp32_layers": build["fp32_layers"], "fp16_flop_share": prec["flops"]["fp16_share"],
        "files": digests,
        "tolerance": {o: module.tolerance(o) for o in result.records["export"].meta["outputs"]}, "cache_key": result.records["build"].key,
        "verification": {s: {"status": c["status"], "kind": c["kind"], "reason": c.get("reason", ""),
                             "outputs": c.get("outputs", {})} for s, c in verify["checks"].items()},
    }
