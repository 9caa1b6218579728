"""Publish verified engines: engines/<target>/<module>.engine + <module>.json sidecar + the bundle
(inputs and caller-view reference) that `trtforge verify` needs on the target machine, and
engines/index.json listing exactly the published set with digests (trtforge/engines_folder/index.py).

Each file: temp name in the destination folder, fsync, os.replace. Order, so that a SIGKILL at any
point leaves a folder that `trtforge verify` fails on or that is consistent: the index first names
every file about to change as pending; the old sidecar goes; files are copied; the sidecar is
written; the index last describes the module again. A module that failed in any way is withdrawn
the same way: only files the index lists are ever deleted (never a glob over names, which once
matched another module's files)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from trtforge.artifacts import (
    VERSION,
    BuildFiles,
    BuildMeta,
    ExportFiles,
    ExportMeta,
    PrecisionMeta,
    VerifyFiles,
    VerifyMeta,
    meta,
    npz,
)
from trtforge.cache import Store, digest_file
from trtforge.cache.atomic import atomic_copy, atomic_write_bytes, fsync_dir
from trtforge.cache.tempnames import sweep_temps
from trtforge.cache.testhooks import checkpoint
from trtforge.driver.results import ModuleResult
from trtforge.driver.stale import upstream_keys
from trtforge.engines_folder import index as engines_index
from trtforge.errors import InternalError, PublishError
from trtforge.manifest import Manifest, ModuleSpec


def _unchanged(dest: Path, digest: str) -> bool:
    return dest.is_file() and not dest.is_symlink() and digest_file(dest) == digest


def _claimed(index: dict, name: str) -> set[str]:
    """What the index says this module may have on disk: its files and any pending names."""
    entry = index["modules"].get(name)
    return set(entry["files"] if entry else ()) | set(index["pending"].get(name, ()))


def _remove(out_dir: Path, rel: str) -> None:
    path = engines_index.inside(out_dir, rel)
    if path is not None:
        path.unlink(missing_ok=True)


def withdraw(out_dir: Path, index: dict, name: str) -> None:
    """Delete what the index lists for `name` (sidecar first, so no sidecar ever vouches for a
    half-deleted bundle); the index says pending until every file is gone."""
    claimed = _claimed(index, name)
    if not claimed and name not in index["modules"] and name not in index["pending"]:
        return  # nothing published: write nothing (a failing no-op rebuild stays a no-op)
    index["modules"].pop(name, None)
    index["pending"][name] = sorted(claimed)
    engines_index.save(out_dir, index)
    for rel in sorted(claimed, key=lambda r: not r.endswith(".json")):
        _remove(out_dir, rel)
    index["pending"].pop(name)
    engines_index.save(out_dir, index)


def _bundle(store: Store, result: ModuleResult, target: str) -> dict[str, tuple[Path, str]]:
    """{path relative to the output folder: (cached source, digest)} of everything but the sidecar."""
    name, build, export = result.module, result.records["build"], result.records["export"]
    bview, eview = store.view(build), store.view(export)
    engine, c_in, c_ref = BuildFiles.ENGINE, npz(ExportFiles.CALLER_INPUTS), npz(ExportFiles.CALLER_REFERENCE)
    files = {
        f"{name}.engine": (bview / engine, build.outputs[engine]["digest"]),
        f"{name}.inputs.npz": (eview / c_in, export.outputs[c_in]["digest"]),
        f"{name}.reference.npz": (eview / c_ref, export.outputs[c_ref]["digest"]),
    }
    files.update(_random_sets(result, eview, name))
    files.update(_polygraphy_bundle(store, result, name))
    return {f"{target}/{f}": v for f, v in files.items()}


def _check_claims(index: dict, name: str, rels) -> None:
    for other in set(index["modules"]) | set(index["pending"]):
        if other != name and _claimed(index, other) & set(rels):
            clash = sorted(_claimed(index, other) & set(rels))[0]
            raise InternalError(f"module '{name}' would publish {clash}, which module '{other}' owns")


def _publish_ok(store: Store, result: ModuleResult, out_dir: Path, module: ModuleSpec, index: dict) -> list[str]:
    name = result.name  # the index's key: "<target>/<module>" for a [targets.NAME] target
    target = result.target or meta(result.records["build"], BuildMeta)["target"]["name"]
    files = _bundle(store, result, target)
    side_rel = f"{target}/{result.module}.json"
    _check_claims(index, name, [*files, side_rel])
    if engines_index.inside(out_dir, side_rel) is None:
        raise PublishError(
            "is a symbolic link; trtforge never writes through a link",
            where=str(out_dir / target),
            module=name,
            hint="remove the link; the engines folder must hold real folders",
        )
    data = json.dumps(
        sidecar_doc(result, {r.split("/", 1)[1]: d for r, (_, d) in files.items()}, module), indent=1, sort_keys=True
    ).encode()
    entry: dict[str, Any] = {
        "sidecar": side_rel,
        "files": {**{r: d for r, (_, d) in files.items()}, side_rel: hashlib.sha256(data).hexdigest()},
    }
    published = sorted(entry["files"])
    if (
        index["modules"].get(name) == entry
        and name not in index["pending"]
        and all(_unchanged(out_dir / r, d) for r, d in entry["files"].items())
    ):
        return published  # a no-op: nothing written
    old = _claimed(index, name)
    index["modules"].pop(name, None)
    index["pending"][name] = sorted(old | set(entry["files"]))
    engines_index.save(out_dir, index)
    checkpoint("publish:begin")
    folder = out_dir / target
    folder.mkdir(parents=True, exist_ok=True)
    sweep_temps(folder, prefix=f".{result.module}.")
    stale = [(src, out_dir / r) for r, (src, d) in files.items() if not _unchanged(out_dir / r, d)]
    # the old sidecar describes the old files: it goes before any of them changes
    for rel in sorted(
        old - set(entry["files"]) | ({side_rel} if stale else set()), key=lambda r: not r.endswith(".json")
    ):
        _remove(out_dir, rel)
    fsync_dir(folder)
    for src, dest in stale:
        atomic_copy(src, dest)
    checkpoint("publish")
    side = out_dir / side_rel
    if not _unchanged(side, entry["files"][side_rel]):
        # test hook: TRTFORGE_TEST_ENOSPC_AT=publish:write-sidecar fails the sidecar write (the last
        # one) as a full disk would, after the engine was copied: a failed publish withdraws it
        checkpoint("publish:write-sidecar", str(side))
        atomic_write_bytes(side, data)
    checkpoint("publish:sidecar")
    index["modules"][name] = entry
    index["pending"].pop(name)
    engines_index.save(out_dir, index)
    return published


def publish(store: Store, result: ModuleResult, out_dir: Path, module: ModuleSpec) -> list[str]:
    """Publish a verified module, or withdraw whatever it had published when it failed. Returns
    the published paths, relative to the output folder."""
    name = result.name
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with engines_index.locked(out_dir):
            for top in engines_index.TOP_FILES:  # temps of a killed index or report write
                sweep_temps(out_dir, prefix=f".{top}.")
            index = engines_index.load(out_dir) or engines_index.empty()
            try:
                if not result.ok:
                    withdraw(out_dir, index, name)
                    return []
                return _publish_ok(store, result, out_dir, module, index)
            except OSError:
                # an engine without its matching sidecar must not stay: it would pass for a verified one
                with contextlib.suppress(OSError):
                    withdraw(out_dir, engines_index.load(out_dir) or engines_index.empty(), name)
                raise
    except OSError as e:
        raise PublishError(
            f"cannot write: {e.strerror}",
            where=str(e.filename or out_dir),
            module=name,
            hint="free space or make the output folder writable, then run again; "
            "nothing was published and the cache is intact",
        ) from None


def prune(out_dir: Path, keep: set[str]) -> list[str]:
    """A full build: withdraw every module the manifest no longer names. Returns their names."""
    index = engines_index.load(out_dir)
    if index is None:
        return []
    gone = sorted((set(index["modules"]) | set(index["pending"])) - keep)
    if gone:
        try:
            with engines_index.locked(out_dir):
                index = engines_index.load(out_dir) or engines_index.empty()
                for name in gone:
                    withdraw(out_dir, index, name)
        except OSError as e:
            raise PublishError(
                f"cannot remove a module no longer in the manifest: {e.strerror}",
                where=str(e.filename or out_dir),
                hint="make the output folder writable, then run again",
            ) from None
    return gone


def read_sidecar(out_dir: Path, index: dict, name: str) -> dict | None:
    """The published sidecar of `name` when its digest is the index's, else None."""
    entry = index["modules"].get(name)
    path = engines_index.inside(out_dir, entry["sidecar"]) if entry else None
    if (
        path is None
        or not path.is_file()
        or digest_file(path, trust_memo=False) != entry["files"].get(entry["sidecar"])
    ):
        return None
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def mark_stale(out_dir: Path, verdicts: dict[str, str | None]) -> list[str]:
    """Write each entry's stale mark (a reason, or None to clear it) into its sidecar and the
    index: the index names the sidecar pending while it is rewritten, as a publish does. Returns
    the names marked stale."""
    stale: list[str] = []
    try:
        with engines_index.locked(out_dir):
            index = engines_index.load(out_dir)
            if index is None:
                return stale
            for name, why in sorted(verdicts.items()):
                entry, side = index["modules"].get(name), read_sidecar(out_dir, index, name)
                if entry is None or side is None or name in index["pending"]:
                    continue
                stale += [name] if why else []
                if side.get("stale") == why and entry.get("stale") == why:
                    continue
                side = {k: v for k, v in side.items() if k != "stale"} | ({"stale": why} if why else {})
                data = json.dumps(side, indent=1, sort_keys=True).encode()
                rel = entry["sidecar"]
                index["pending"][name] = [rel]
                engines_index.save(out_dir, index)
                atomic_write_bytes(out_dir / rel, data)
                entry = {k: v for k, v in entry.items() if k != "stale"} | ({"stale": why} if why else {})
                entry["files"][rel] = hashlib.sha256(data).hexdigest()
                index["modules"][name] = entry
                index["pending"].pop(name)
                engines_index.save(out_dir, index)
    except OSError as e:
        raise PublishError(
            f"cannot mark a stale engine: {e.strerror}",
            where=str(e.filename or out_dir),
            hint="make the output folder writable, then run again",
        ) from None
    return stale


def _random_sets(result: ModuleResult, eview: Path, name: str) -> dict:
    """Every input set besides the example one (verify.random_inputs, verify.input_sets, the min,
    opt and max of each optimization profile) travels with the bundle, so `trtforge verify` on the
    target checks them too: <module>.inputs.r1.npz + .reference.r1.npz, <module>.inputs.s1.npz,
    <module>.inputs.p0.min.npz + ..."""
    outputs = result.records["export"].outputs
    files = {}
    for fname in sorted(outputs):
        for stem, dest in ((ExportFiles.CALLER_INPUTS, "inputs"), (ExportFiles.CALLER_REFERENCE, "reference")):
            if fname.startswith(f"{stem}.") and fname.endswith(".npz") and fname != npz(stem):
                tag = fname[len(stem) : -len(".npz")]  # ".r1", ".s1"
                files[f"{name}.{dest}{tag}.npz"] = (eview / fname, outputs[fname]["digest"])
    return files


def _polygraphy_bundle(store: Store, result: ModuleResult, name: str) -> dict:
    """Every input set and its reference in polygraphy's JSON format (`polygraphy run
    --load-inputs / --load-outputs`), written by the verify stage."""
    verify = result.records["verify"]
    view = store.view(verify)
    # profile 0's pair, then one per further optimization profile (polygraphy-inputs.p1.json, ...)
    bundle = [f for f in sorted(verify.outputs) if f.startswith("polygraphy-") and f.endswith(".json")]
    files = bundle or [VerifyFiles.POLYGRAPHY_INPUTS, VerifyFiles.POLYGRAPHY_REFERENCE]
    return {f"{name}.{f}": (view / f, verify.outputs[f]["digest"]) for f in files}


def sidecar_doc(result: ModuleResult, digests: dict, module: ModuleSpec) -> dict:
    build = meta(result.records["build"], BuildMeta)
    prec = meta(result.records["precision_rules"], PrecisionMeta)
    verify = meta(result.records["verify"], VerifyMeta)
    return {
        "trtforge": VERSION,
        "module": result.module,
        "backend": build["backend"],
        "backend_version": build["backend_version"],
        # the target's name (its folder) beside what it runs on: GPU model or compute capabilities
        "target": {**build["target"], "name": result.target or build["target"]["name"]},
        "io": build["io"],
        "timing_cache": (build.get("timing_cache") or {}).get("digest"),  # not in the key: it grows
        "fp32_layers": build["fp32_layers"],
        "fp16_flop_share": prec["flops"]["fp16_share"],
        "files": digests,
        **({"profiles": build["profiles"]} if build.get("profiles") else {}),
        "tolerance": {o: module.tolerance(o) for o in meta(result.records["export"], ExportMeta)["outputs"]},
        "cache_key": result.records["build"].key,
        # the keys of the stages the engine was built from: a later subset build compares them with
        # the manifest's and marks this entry stale when they moved on (driver/stale.py)
        "upstream": upstream_keys(result),
        "verification": {
            s: {
                "status": c["status"],
                "kind": c["kind"],
                "reason": c.get("reason", ""),
                "outputs": c.get("outputs", {}),
            }
            for s, c in verify["checks"].items()
        },
    }


def published_names(manifest: Manifest) -> set[str]:
    """The names engines/index.json may hold for this manifest: a module per target
    ("<target>/<module>"), or the module alone without targets."""
    if not manifest.targets:
        return {m.name for m in manifest.modules}
    return {f"{t.name}/{m.name}" for m in manifest.modules for t in manifest.targets}
