"""Example inputs and reference tensors: generated from a seed, stored as .npz without pickle."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtforge.artifacts import ExportFiles
from trtforge.data.sources import is_random, source_name
from trtforge.errors import ManifestError, invariant

NP_DTYPES = {
    "float16": np.float16,
    "float32": np.float32,
    "int64": np.int64,
    "int32": np.int32,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


@dataclass(frozen=True)
class At:
    """Where a generator is: the manifest's folder (data files resolve from it) and the field an
    error names (`modules.NAME.inputs.X`)."""

    root: Path | None = None
    where: str = "inputs"


def make_inputs(
    specs, seed: int | str = 0, shapes: dict | None = None, root: Path | None = None, where: str = "inputs"
) -> dict[str, np.ndarray]:
    """Deterministic inputs from each input's source (trtforge/data/sources.py); same specs,
    seed, shapes and data files, same bytes. `shapes` gives a concrete shape per input name
    (default: the spec's own); `root` is the manifest's folder, where data files are."""
    out = {}
    for spec in specs:
        salt = int.from_bytes(hashlib.sha256(f"{spec.name}:{seed}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(salt)
        if spec.dtype == "bfloat16":
            raise ValueError("bfloat16 example inputs are not supported yet")
        shape = tuple((shapes or {}).get(spec.name, spec.shape))
        generate = GENERATORS[source_name(spec.source)]
        arr = generate(spec, shape, rng, At(root, f"{where}.{spec.name}"))
        invariant(
            arr.shape == shape and arr.dtype == NP_DTYPES[spec.dtype],
            f"source {source_name(spec.source)} made {arr.dtype}{list(arr.shape)} for input "
            f"'{spec.name}', {spec.dtype}{list(shape)} asked",
        )
        out[spec.name] = np.ascontiguousarray(arr)
    return out


# One generator per source: (spec, concrete shape, rng, At) -> array of the spec's dtype and that
# shape. Shapes come from the caller, so each works for any shape a profile asks for.


def uniform(spec, shape, rng, at: At) -> np.ndarray:
    lo, hi = spec.range
    dtype = NP_DTYPES[spec.dtype]
    if np.issubdtype(dtype, np.floating):
        return rng.uniform(lo, hi, size=shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    return rng.integers(int(lo), int(hi) + 1, size=shape).astype(dtype)


def normal(spec, shape, rng, at: At) -> np.ndarray:
    src = spec.source
    return rng.normal(src["mean"], src["std"], size=shape).astype(NP_DTYPES[spec.dtype])


def constant(spec, shape, rng, at: At) -> np.ndarray:
    return np.full(shape, spec.source["value"], dtype=NP_DTYPES[spec.dtype])


def padding_mask(spec, shape, rng, at: At) -> np.ndarray:
    """1 for real positions, 0 for the last `pad` of each row (the first, with side = 'left');
    `pad` is per row of the flattened leading axes, cycled."""
    pads, length = spec.source["pad"], shape[-1]
    rows = int(np.prod(shape[:-1]))
    pad = np.resize(np.asarray(pads), rows)
    if pad.max(initial=0) >= length:
        raise ManifestError(
            f"pad {int(pad.max())} leaves no real position in a row of {length}",
            where=f"{at.where}.pad",
            hint=f"pad at most {length - 1}",
        )
    pos = np.arange(length)
    real = pos[None, :] < (length - pad)[:, None] if spec.source["side"] == "right" else pos[None, :] >= pad[:, None]
    return real.reshape(shape).astype(NP_DTYPES[spec.dtype])


def token_ids(spec, shape, rng, at: At) -> np.ndarray:
    return rng.integers(0, spec.source["vocab_size"], size=shape).astype(NP_DTYPES[spec.dtype])


def positions(spec, shape, rng, at: At) -> np.ndarray:
    pos = spec.source["start"] + np.arange(shape[-1])
    return np.broadcast_to(pos, shape).astype(NP_DTYPES[spec.dtype])


def from_file(spec, shape, rng, at: At) -> np.ndarray:
    from trtforge.data import samples as sample_files

    rel = spec.source["file"]
    arr = sample_files.read_array(_resolve(at, rel), rel, spec.source["key"], spec.name, at.where)
    dtype = np.dtype(NP_DTYPES[spec.dtype])
    return sample_files.conform(arr, dtype, shape, rel, f"{at.where}.file", declared=tuple(spec.shape))


def from_image(spec, shape, rng, at: At) -> np.ndarray:
    from trtforge.data import samples as sample_files

    rel = spec.source["file"]
    return sample_files.read_image(
        _resolve(at, rel), rel, spec.source, shape, np.dtype(NP_DTYPES[spec.dtype]), at.where
    )


def _resolve(at: At, rel: str) -> Path:
    return (at.root or Path.cwd()) / rel


GENERATORS = {
    "uniform": uniform,
    "normal": normal,
    "value": constant,
    "padding_mask": padding_mask,
    "token_ids": token_ids,
    "positions": positions,
    "file": from_file,
    "image": from_image,
}


def read_input_set(
    specs,
    path: Path,
    shown: str,
    shapes: dict | None = None,
    where: str = "verify.input_sets",
    override: dict | None = None,
) -> dict:
    """A named example set (verify.input_sets): one .npz holding every input by name, each checked
    against the input's dtype and (concrete) shape, or the (dtype, shape) `override` gives it."""
    from trtforge.data import samples as sample_files

    expected = {s.name: (np.dtype(NP_DTYPES[s.dtype]), tuple((shapes or {}).get(s.name, s.shape))) for s in specs}
    expected.update(override or {})
    return sample_files.read_set(path, shown, expected, where)


def random_inputs(specs) -> dict[str, str]:
    """{input name: source} of the inputs whose values are drawn from the seed, not given."""
    return {s.name: source_name(s.source) for s in specs if is_random(s.source)}


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def same_arrays(sub: dict, full: dict) -> bool:
    """Every array of `sub` is in `full` under its name, with the same dtype and values."""
    return all(k in full and full[k].dtype == v.dtype and np.array_equal(full[k], v) for k, v in sub.items())


def random_set_suffix(i: int) -> str:
    """File-name tag of the i-th random input set: `inputs.npz` is the example set,
    `inputs.r1.npz`, `inputs.r2.npz`, ... the seeded random ones (readers of the example set
    alone are unaffected)."""
    return f".r{i}"


# the export's list of input sets: [{"tag": ".r1", "label": "random 1", "random": {input: source}}]
INPUT_SETS = ExportFiles.SETS


def _natural(tag: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", tag)]


def set_listing(folder: Path) -> list[dict]:
    """Every input set in `folder` (an export's output or a copy of it): the example set, then the
    sets input_sets.json lists, then any other `inputs.<tag>.npz` found (labelled by the tag,
    `.r1` as "random 1"), each {"tag", "label", "random"}."""
    listed = json.loads((folder / INPUT_SETS).read_text()) if (folder / INPUT_SETS).exists() else []
    known = {e["tag"] for e in listed}
    found = sorted((p.name[len("inputs") : -len(".npz")] for p in folder.glob("inputs.*.npz")), key=_natural)
    out = [e for e in listed if e["tag"] == ""] or [{"tag": "", "label": "example", "random": {}}]
    out += [e for e in listed if e["tag"]]
    for tag in found:
        if tag not in known:
            m = re.fullmatch(r"\.r(\d+)", tag)
            out.append({"tag": tag, "label": f"random {m.group(1)}" if m else tag[1:], "random": {}})
    return out


def input_sets(folder: Path, inputs: str, reference: str) -> list[tuple[str, dict, dict]]:
    """(label, inputs, reference) for the example set and every other set in `folder`;
    `inputs`/`reference` are file stems such as "caller_inputs"/"caller_reference"."""
    return [
        (
            e["label"],
            load_arrays(folder / f"{inputs}{e['tag']}.npz"),
            load_arrays(folder / f"{reference}{e['tag']}.npz"),
        )
        for e in set_listing(folder)
    ]
