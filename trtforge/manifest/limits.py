"""Resource limits and value ranges the manifest loader checks before any work starts.

Each limit is a user mistake caught at load time (one line, exit 2) that would otherwise cost an
export, a traceback or the machine's memory: a 224 GiB example input, a manifest that is
/dev/zero, a module name too long for the file names made from it.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
from pathlib import Path

from trtforge.errors import ManifestError

MAX_MANIFEST_BYTES = 1 << 20  # an engines.toml of a few hundred modules is ~100 KiB
# the longest published file name is '.<name>.inputs.r<N>.npz.<pid>@<host>-<pidns>.<random>.tmp':
# ~150 characters besides the name, and NAME_MAX is 255
MAX_NAME_CHARS = 96
MAX_RANK = 8  # TensorRT's Dims holds at most 8 dimensions
# the example inputs of every set (example + verify.random_inputs) are made in memory, with their
# FP32 reference and the caller's view beside them: a few copies of this each
MAX_INPUT_BYTES = 2 << 30
MAX_RANDOM_INPUTS = 64
OPTIMIZATION_LEVELS = (0, 5)  # TensorRT's builder_optimization_level
MAX_WORKSPACE_MIB = 1 << 20  # 1 TiB
DTYPE_BYTES = {"float16": 2, "float32": 4, "int64": 8, "int32": 4, "int8": 1, "uint8": 1, "bool": 1}
FLOAT16_MAX = 65504.0
INT_RANGE_MAX = float(1 << 62)  # integers are drawn in int64: high + 1 must not overflow
# a tensor name becomes an .npz member and an ONNX value name: printable, no separators
_TENSOR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")


def check_name(name: str, what: str, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{what} name must not be empty", where=where)
    if len(name) > MAX_NAME_CHARS:
        raise ManifestError(
            f"{what} name is {len(name)} characters; the limit is {MAX_NAME_CHARS} "
            "(published file names are made from it)",
            where=where,
            hint="use a shorter name",
        )
    return name


def check_tensor_name(name: str, what: str, where: str) -> str:
    check_name(name, what, where)
    if not _TENSOR_NAME.match(name):
        raise ManifestError(
            f"{what} name {name!r} must be letters, digits, '_', '.', ':', '-'",
            where=where,
            hint="rename it in the manifest",
        )
    return name


def finite(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise ManifestError(f"must be a finite number, got {value}", where=where)
    return value


def check_rank(shape: tuple, where: str) -> None:
    if len(shape) > MAX_RANK:
        raise ManifestError(f"{len(shape)} dimensions; TensorRT takes at most {MAX_RANK}", where=where)


def input_bytes(shape: tuple, dtype: str) -> int:
    return math.prod(shape) * DTYPE_BYTES.get(dtype, 8)


def check_input_sizes(inputs, sets: int, where: str, dims: dict | None = None) -> None:
    """All example input sets together within MAX_INPUT_BYTES, checked before numpy allocates;
    a named dimension counts at its largest value (`dims`)."""

    def shape(i):
        return tuple((dims or {}).get(d, 1) if isinstance(d, str) else d for d in i.shape)

    total = sum(input_bytes(shape(i), i.dtype) for i in inputs) * sets
    if total <= MAX_INPUT_BYTES:
        return
    big = max(inputs, key=lambda i: input_bytes(shape(i), i.dtype))
    raise ManifestError(
        f"example inputs of {_gib(total)} ({sets} set(s); '{big.name}' {list(shape(big))} {big.dtype} is "
        f"{math.prod(shape(big)):.3g} elements); the limit is {_gib(MAX_INPUT_BYTES)}",
        where=f"{where}.inputs.{big.name}.shape",
        hint="declare a smaller example shape (or fewer verify.random_inputs)",
    )


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB"


def check_range(lo: float, hi: float, dtype: str, where: str) -> None:
    for v in (lo, hi):
        finite(v, where)
    bound = {"float16": FLOAT16_MAX, "float32": 3.0e38}.get(dtype, INT_RANGE_MAX)
    if max(abs(lo), abs(hi)) > bound:
        raise ManifestError(f"range [{lo:g}, {hi:g}] does not fit {dtype} (|value| <= {bound:g})", where=where)


def check_int_range(value: int, lo: int, hi: int, where: str, hint: str | None = None) -> int:
    if not lo <= value <= hi:
        raise ManifestError(f"must be in [{lo}, {hi}], got {value}", where=where, hint=hint)
    return value


@functools.cache
def exporter_opsets() -> dict[str, tuple[int, int]]:
    """Opsets the installed torch exporters take, read from torch's constants file without
    importing torch (the manifest loader runs on every no-op build). Above its maximum, the
    dynamo exporter silently keeps opset 18."""
    consts = {"ONNX_MIN_OPSET": 7, "ONNX_MAX_OPSET": 23, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET": 20}
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            text = (Path(folder) / "onnx" / "_constants.py").read_text()
        except OSError:
            continue
        for name in consts:
            m = re.search(rf"^{name}\s*=\s*(\d+)", text, re.M)
            if m:
                consts[name] = int(m.group(1))
        break
    return {
        "dynamo": (consts["ONNX_MIN_OPSET"], consts["ONNX_MAX_OPSET"]),
        "torchscript": (consts["ONNX_MIN_OPSET"], consts["ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET"]),
    }


def check_opset(export: dict, where: str) -> None:
    lo, hi = exporter_opsets()[export["exporter"]]
    if not lo <= export["opset"] <= hi:
        raise ManifestError(
            f"opset {export['opset']} is outside what the installed torch "
            f"{export['exporter']} exporter supports ({lo}..{hi})",
            where=f"{where}.opset",
            hint=f"set export.opset between {lo} and {hi}",
        )


def check_pattern(pattern: str, where: str) -> str:
    """A `depends` glob: relative to the manifest folder, non-empty (pathlib refuses the others
    with a traceback)."""
    if not pattern.strip():
        raise ManifestError("an empty pattern", where=where, hint="write e.g. 'weights/*.pt'")
    if Path(pattern).is_absolute() or pattern.startswith("~"):
        raise ManifestError(
            f"'{pattern}' is not relative to the manifest's folder",
            where=where,
            hint="write a pattern relative to the folder of engines.toml",
        )
    return pattern
