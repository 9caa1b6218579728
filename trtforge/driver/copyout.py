"""`trtforge export MODULE --stage S -o DIR`: a stage's ONNX as a standalone, standard artifact.

The cache hands stages their inputs as hard links to its blobs, and onnx 1.23 refuses external
data with more than one link ("a potential hardlink attack"), so `onnx.load`, polygraphy and
Netron could not open a cached model in place. This writes real copies (one link each) of the
model and every external-data file it names, each checked against the record's digest.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

from trtforge.cache import Record, Store
from trtforge.cache.atomic import fsync_dir
from trtforge.cache.keys import hash_file
from trtforge.cache.tempnames import temp_beside
from trtforge.driver.inspect import ONNX_STAGES, cached_record
from trtforge.errors import TrtforgeError
from trtforge.manifest import Manifest


def external_files(model_path: Path) -> list[str]:
    """The file names the model's external tensors point at (weights not read)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    names: set[str] = set()
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in tensor.external_data if e.key == "location")
    return sorted(names)


def _tensors(graph):
    """Every tensor of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def _record(store: Store, manifest: Manifest, name: str, stage: str) -> Record:
    if stage not in ONNX_STAGES:
        raise TrtforgeError(
            f"stage '{stage}' has no ONNX model", where="--stage", hint=f"export one of: {', '.join(ONNX_STAGES)}"
        )
    return cached_record(store, manifest.module(name).name, stage)


def _copy_checked(src: Path, dest: Path, digest: str) -> None:
    """A copy (never a link) of `src`, written beside `dest` and renamed into place once its
    digest matched the record's."""
    tmp = temp_beside(dest)
    try:
        shutil.copyfile(src, tmp)
        if hash_file(tmp) != digest:
            raise TrtforgeError(
                f"cached {src.name} does not match its digest",
                where=str(src),
                hint="`trtforge cache verify` removes it; the next build rebuilds it",
            )
        os.chmod(tmp, 0o644)  # the blob is read-only; the copy is the user's
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(store: Store, manifest: Manifest, name: str, stage: str, out_dir: Path) -> list[Path]:
    """Copy the module's last `stage` model and its external data into `out_dir`; the paths written."""
    record = _record(store, manifest, name, stage)
    model_name = ONNX_STAGES[stage]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrtforgeError(
            f"cannot create the folder: {e.strerror}", where=f"-o {out_dir}", hint="pass a writable folder"
        ) from None
    with store.gc_lock(exclusive=False):  # `cache gc` must not collect what is being copied
        view = store.view(record)
        names = [model_name, *external_files(view / model_name)]
        for rel in names[1:]:
            if rel not in record.outputs or len(PurePosixPath(rel).parts) != 1:
                raise TrtforgeError(
                    f"the model names external data '{rel}' that its cache record does not hold",
                    where=f"{name}:{stage}",
                    hint="rebuild with --force --stage " + stage,
                )
        written = []
        for rel in names:
            _copy_checked(view / rel, out_dir / rel, record.outputs[rel]["digest"])
            written.append(out_dir / rel)
    fsync_dir(out_dir)
    return written
