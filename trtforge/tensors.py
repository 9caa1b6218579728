"""Example inputs and reference tensors: generated from a seed, stored as .npz without pickle."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

NP_DTYPES = {"float16": np.float16, "float32": np.float32, "int64": np.int64, "int32": np.int32,
             "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


def make_inputs(specs, seed: int | str = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs within each declared range; same specs and seed, same bytes."""
    out = {}
    for spec in specs:
        salt = int.from_bytes(hashlib.sha256(f"{spec.name}:{seed}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(salt)
        lo, hi = spec.range
        if spec.dtype == "bfloat16":
            raise ValueError("bfloat16 example inputs are not supported yet")
        dtype = NP_DTYPES[spec.dtype]
        if np.issubdtype(dtype, np.floating):
            arr = rng.uniform(lo, hi, size=spec.shape).astype(dtype)
        elif dtype == np.bool_:
            arr = rng.integers(0, 2, size=spec.shape).astype(np.bool_)
        else:
            arr = rng.integers(int(lo), int(hi) + 1, size=spec.shape).astype(dtype)
        out[spec.name] = np.ascontiguousarray(arr)
    return out


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


def input_sets(folder: Path, inputs: str, reference: str) -> list[tuple[str, dict, dict]]:
    """(label, inputs, reference) for the example set and every random set found in `folder`;
    `inputs`/`reference` are file stems such as "caller_inputs"/"caller_reference"."""
    sets = [("example", load_arrays(folder / f"{inputs}.npz"), load_arrays(folder / f"{reference}.npz"))]
    i = 1
    while (folder / f"{inputs}{random_set_suffix(i)}.npz").exists():
        tag = random_set_suffix(i)
        sets.append((f"random {i}", load_arrays(folder / f"{inputs}{tag}.npz"),
                     load_arrays(folder / f"{reference}{tag}.npz")))
        i += 1
    return sets
