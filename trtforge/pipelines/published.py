"""A pipeline on the target: its inputs and reference outputs published beside the engines.

    engines/pipelines/<name>/inputs.npz      the pipeline's inputs (shared latents, prompt ids, ...)
    engines/pipelines/<name>/reference.npz   the FP32 PyTorch pipeline's outputs
    engines/pipelines/<name>.json            modules, runner, runner_args, output checks

index.json lists them under "pipelines" (name -> {sidecar, files}), written the way modules are:
the index names the files as pending first and describes them last.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from trtforge.cache import digest_file
from trtforge.cache.atomic import atomic_copy, atomic_write_bytes
from trtforge.engines_folder import index as engines_index
from trtforge.manifest.pipelines import PipelineSpec

INPUTS, REFERENCE, PUBLISHED = "inputs.npz", "reference.npz", "published.npz"
FOLDER = "pipelines"


def pending_name(name: str) -> str:
    return f"{FOLDER}/{name}"


def sidecar(spec: PipelineSpec, files: dict[str, str], meta: dict) -> dict:
    return {
        "pipeline": spec.name,
        "modules": list(spec.modules),
        "runner": spec.runner,
        "runner_args": spec.runner_args,
        "outputs": spec.outputs,
        "files": files,
        "calls": meta.get("calls", {}),
        "signatures": meta.get("signatures", {}),  # each module's inputs and profiles: calls are checked on the target
        "build_verdict": {"passed": meta.get("passed"), "outputs": meta.get("outputs", {})},
    }


def publish_files(out_dir: Path, spec: PipelineSpec, sources: dict[str, Path], meta: dict) -> list[str]:
    name = spec.name
    rels = {f"{FOLDER}/{name}/{f}": (src, digest_file(src)) for f, src in sources.items()}
    side_rel = f"{FOLDER}/{name}.json"
    data = json.dumps(sidecar(spec, {r.split("/", 2)[2]: d for r, (_, d) in rels.items()}, meta), indent=1).encode()
    entry: dict[str, Any] = {
        "sidecar": side_rel,
        "files": {**{r: d for r, (_, d) in rels.items()}, side_rel: _sha(data)},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with engines_index.locked(out_dir):
        index = engines_index.load(out_dir) or engines_index.empty()
        pipes = index.setdefault("pipelines", {})
        if pipes.get(name) == entry and all(_same(out_dir / r, d) for r, d in entry["files"].items()):
            return sorted(entry["files"])
        old = set(pipes.pop(name, {}).get("files", {}))
        index["pending"][pending_name(name)] = sorted(old | set(entry["files"]))
        engines_index.save(out_dir, index)
        (out_dir / FOLDER / name).mkdir(parents=True, exist_ok=True)
        for rel in sorted(old - set(entry["files"])):
            _remove(out_dir, rel)
        for rel, (src, digest) in rels.items():
            if not _same(out_dir / rel, digest):
                atomic_copy(src, out_dir / rel)
        atomic_write_bytes(out_dir / side_rel, data)
        pipes[name] = entry
        index["pending"].pop(pending_name(name))
        engines_index.save(out_dir, index)
    return sorted(entry["files"])


def withdraw(out_dir: Path, name: str) -> bool:
    """Remove what the index lists for pipeline `name`; False when nothing was published."""
    index = engines_index.load(out_dir)
    if index is None or name not in index.get("pipelines", {}):
        return False
    with engines_index.locked(out_dir):
        index = engines_index.load(out_dir) or engines_index.empty()
        entry = index.get("pipelines", {}).pop(name, None)
        if entry is None:
            return False
        index["pending"][pending_name(name)] = sorted(entry["files"])
        engines_index.save(out_dir, index)
        for rel in sorted(entry["files"], key=lambda r: not r.endswith(".json")):
            _remove(out_dir, rel)
        index["pending"].pop(pending_name(name))
        engines_index.save(out_dir, index)
    return True


def _remove(out_dir: Path, rel: str) -> None:
    path = engines_index.inside(out_dir, rel)
    if path is not None:
        path.unlink(missing_ok=True)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _same(path: Path, digest: str) -> bool:
    return path.is_file() and not path.is_symlink() and digest_file(path) == digest
