"""Where an input's example values come from, as the manifest says it (no numpy here: the manifest
loader runs on every no-op build).

One source per input, resolved once into a canonical dict (two manifests that mean the same thing
hash the same):

| manifest keys | source dict |
| --- | --- |
| `range = [lo, hi]` or `dist = "uniform"` (the default) | `{"dist": "uniform"}` (bounds in the spec's `range`) |
| `dist = "normal", mean, std` | `{"dist": "normal", "mean", "std"}` |
| `value = 999` | `{"value": 999}`, broadcast to the shape |
| `file = "x.npy"` / `"x.npz", key` | `{"file", "key"}` |
| `file = "x.png"` (or .jpg/.jpeg), `layout, mean, std, scale` | `{"file", "layout", "mean", "std", "scale"}` |
| `kind = "padding_mask", pad, side` | ones, the last `pad` positions of each row 0 |
| `kind = "token_ids", vocab_size` | random ids in [0, vocab_size) |
| `kind = "positions", start` | start, start + 1, ... along the last axis |

The values themselves are made by trtforge/data/tensors.py (one function per source).
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import PurePosixPath

from trtforge.errors import ManifestError

# every key an input table may hold besides shape/dtype/range/arg
SOURCE_KEYS = (
    "file",
    "key",
    "value",
    "dist",
    "mean",
    "std",
    "kind",
    "vocab_size",
    "pad",
    "side",
    "start",
    "layout",
    "scale",
)
ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DISTS = ("uniform", "normal")
KINDS = ("padding_mask", "token_ids", "positions")
LAYOUTS = {4: ("NCHW", "NHWC"), 3: ("CHW", "HWC")}
# the keys each source takes besides its own selector
_KEYS = {
    "uniform": (),
    "normal": ("mean", "std"),
    "value": (),
    "array": ("key",),
    "image": ("layout", "mean", "std", "scale"),
    "padding_mask": ("pad", "side"),
    "token_ids": ("vocab_size",),
    "positions": ("start",),
}
_INT_BOUNDS = {
    "int64": (-(1 << 63), (1 << 63) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int8": (-128, 127),
    "uint8": (0, 255),
    "bool": (0, 1),
}
_FLOAT_BOUNDS = {"float16": 65504.0, "float32": 3.0e38}


def is_float(dtype: str) -> bool:
    return dtype in _FLOAT_BOUNDS


def source_name(source: dict) -> str:
    """One word for a source: uniform, normal, value, file, image, padding_mask, ..."""
    if "dist" in source:
        return source["dist"]
    if "value" in source:
        return "value"
    if "kind" in source:
        return source["kind"]
    return "image" if "layout" in source else "file"


def is_random(source: dict) -> bool:
    """Drawn from the seed (made up), not given: the report says so beside a failure."""
    return "dist" in source or source.get("kind") == "token_ids"


def data_file(source: dict) -> str | None:
    """The file (relative to the manifest's folder) the values are read from, if any."""
    return source.get("file")


def parse(raw: dict, dtype: str, shape: tuple, has_range: bool, where: str) -> dict:
    """The canonical source dict of one input table's source keys (`raw`), or a ManifestError
    naming the field."""
    given = [k for k in ("file", "value", "dist", "kind") if k in raw]
    if has_range:
        if any(k in raw for k in ("file", "value", "kind")) or raw.get("dist", "uniform") != "uniform":
            other = next(k for k in given if k != "dist" or raw["dist"] != "uniform")
            raise ManifestError(
                f"range and {other} are both given; range belongs to dist = 'uniform'",
                where=f"{where}.range",
                hint=f"keep one of range or {other}",
            )
    if len(given) > 1:
        raise ManifestError(
            f"{given[0]} and {given[1]} are both given; an input takes one source",
            where=f"{where}.{given[1]}",
            hint=f"keep one of {' or '.join(given)}",
        )
    kind = _kind_of(raw, given, where)
    allowed = _KEYS[kind]
    for key in raw:
        if key not in (*given, *allowed):
            owner = [k for k, keys in _KEYS.items() if key in keys]
            raise ManifestError(
                f"'{key}' does not apply to a {kind} input",
                where=f"{where}.{key}",
                hint=f"'{key}' belongs to {' / '.join(owner)}" if owner else None,
            )
    return _PARSERS[kind](raw, dtype, shape, where)


def _kind_of(raw: dict, given: list, where: str) -> str:
    if not given:
        return "uniform"
    key = given[0]
    if key == "value":
        return "value"
    if key == "dist":
        return _choice(raw["dist"], DISTS, f"{where}.dist")
    if key == "kind":
        return _choice(raw["kind"], KINDS, f"{where}.kind")
    path = _relative_path(raw["file"], f"{where}.file")
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return "array"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    raise ManifestError(
        f"'{path}' is not a .npy, .npz, .png, .jpg or .jpeg file",
        where=f"{where}.file",
        hint="save arrays with numpy.save / numpy.savez",
    )


def _choice(value, choices: tuple, where: str) -> str:
    if not isinstance(value, str) or value not in choices:
        near = difflib.get_close_matches(str(value), choices, n=1)
        raise ManifestError(
            f"{value!r} is not one of {', '.join(choices)}",
            where=where,
            hint=f"did you mean '{near[0]}'?" if near else None,
        )
    return value


def _relative_path(value, where: str) -> str:
    """A data file's path: relative to the manifest's folder, or absolute (data kept outside the
    project, e.g. /data/ids.npy; `~` is the home folder). Either way the export key holds the
    file's content, and an absolute path's folder is left out of it (InputSpec.as_key)."""
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"expected a file path relative to the manifest's folder, got {value!r}", where=where)
    if value.startswith("~"):
        value = os.path.expanduser(value)
        if value.startswith("~"):
            raise ManifestError(f"'{value}': no such home folder", where=where, hint="write an absolute path")
    return PurePosixPath(value).as_posix()


def is_outside(path: str) -> bool:
    """A data path written absolute: its folder is machine-specific, its content is the key."""
    return PurePosixPath(path).is_absolute()


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ManifestError(f"expected a finite number, got {value!r}", where=where)
    return float(value)


def _positive(value, where: str) -> float:
    value = _number(value, where)
    if value <= 0:
        raise ManifestError(f"must be > 0, got {value:g}", where=where)
    return value


def _count(value, where: str, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ManifestError(f"expected an integer >= {lo}, got {value!r}", where=where)
    return value


def _uniform(raw, dtype, shape, where) -> dict:
    return {"dist": "uniform"}


def _normal(raw, dtype, shape, where) -> dict:
    if not is_float(dtype):
        raise ManifestError(
            f"dist = 'normal' needs a float dtype, the input is {dtype}",
            where=f"{where}.dist",
            hint="use range = [low, high], kind = 'token_ids' or value = N for integers",
        )
    mean = _number(raw.get("mean", 0.0), f"{where}.mean")
    std = _positive(raw.get("std", 1.0), f"{where}.std")
    if abs(mean) + 6 * std > _FLOAT_BOUNDS[dtype]:
        raise ManifestError(f"mean {mean:g} +- 6 std {std:g} does not fit {dtype}", where=f"{where}.std")
    return {"dist": "normal", "mean": mean, "std": std}


def _value(raw, dtype, shape, where) -> dict:
    v = raw["value"]
    w = f"{where}.value"
    if isinstance(v, bool):
        if dtype != "bool":
            raise ManifestError(f"{v!r} is a boolean, the input is {dtype}", where=w, hint="write a number")
        return {"value": v}
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ManifestError(f"expected a finite number, got {v!r}", where=w)
    if is_float(dtype):
        if abs(v) > _FLOAT_BOUNDS[dtype]:
            raise ManifestError(f"{v!r} does not fit {dtype} (|value| <= {_FLOAT_BOUNDS[dtype]:g})", where=w)
        return {"value": float(v)}
    if isinstance(v, float) and not v.is_integer():
        raise ManifestError(f"{v!r} is not an integer, the input is {dtype}", where=w)
    lo, hi = _INT_BOUNDS[dtype]
    if not lo <= v <= hi:
        raise ManifestError(f"{v!r} does not fit {dtype} ([{lo}, {hi}])", where=w)
    return {"value": bool(v) if dtype == "bool" else int(v)}


def _array(raw, dtype, shape, where) -> dict:
    path = _relative_path(raw["file"], f"{where}.file")
    key = raw.get("key", "")
    if not isinstance(key, str):
        raise ManifestError(f"expected an array name, got {key!r}", where=f"{where}.key")
    if key and not path.lower().endswith(".npz"):
        raise ManifestError(
            "key names an array inside a .npz file; a .npy holds one array",
            where=f"{where}.key",
            hint="drop key, or point file at the .npz",
        )
    return {"file": path, "key": key}


def _channels(value, name: str, where: str) -> list[float]:
    values = value if isinstance(value, list) else [value]
    if not values or len(values) > 4:
        raise ManifestError(f"expected a number or one per channel, got {value!r}", where=f"{where}.{name}")
    return [(_positive if name == "std" else _number)(v, f"{where}.{name}") for v in values]


def _image(raw, dtype, shape, where) -> dict:
    path = _relative_path(raw["file"], f"{where}.file")
    rank = len(shape)
    layouts = LAYOUTS.get(rank)
    if layouts is None:
        raise ManifestError(
            f"an image fills a rank-3 or rank-4 input, this one has rank {rank}",
            where=f"{where}.file",
            hint="save the array with numpy.save and give the .npy",
        )
    layout = _choice(raw.get("layout", layouts[0]), layouts, f"{where}.layout")
    channels = shape[layout.index("C")]
    if isinstance(channels, int) and channels not in (1, 3, 4):
        raise ManifestError(
            f"layout {layout} puts {channels} channels on axis {layout.index('C')}; an "
            "image has 1 (grey), 3 (RGB) or 4 (RGBA)",
            where=f"{where}.layout",
            hint="set layout = " + " or ".join(f"'{x}'" for x in layouts),
        )
    out: dict = {"file": path, "layout": layout}
    if is_float(dtype):
        out["scale"] = _positive(raw.get("scale", 1 / 255), f"{where}.scale")
        for name, default in (("mean", 0.0), ("std", 1.0)):
            out[name] = _channels(raw.get(name, default), name, where)
            if isinstance(channels, int) and len(out[name]) not in (1, channels):
                raise ManifestError(f"{len(out[name])} values for {channels} channels", where=f"{where}.{name}")
    elif dtype != "uint8":
        raise ManifestError(f"an image fills a float or uint8 input, this one is {dtype}", where=f"{where}.file")
    else:
        for name in ("scale", "mean", "std"):
            if name in raw:
                raise ManifestError(
                    f"{name} normalises a float input; a uint8 input takes the raw pixels",
                    where=f"{where}.{name}",
                    hint="drop it or make the input float16",
                )
    return out


def _padding_mask(raw, dtype, shape, where) -> dict:
    if "pad" not in raw:
        raise ManifestError(
            "missing required key 'pad' (padded positions per row, e.g. pad = 4 or pad = [0, 3])",
            where=f"{where}.pad",
            hint="an all-ones mask is value = 1",
        )
    pads = raw["pad"] if isinstance(raw["pad"], list) else [raw["pad"]]
    if not pads:
        raise ManifestError("expected an integer or a list of integers", where=f"{where}.pad")
    pads = [_count(p, f"{where}.pad") for p in pads]
    length = shape[-1]
    if isinstance(length, int) and max(pads) >= length:
        raise ManifestError(
            f"pad {max(pads)} leaves no real position in a row of {length}",
            where=f"{where}.pad",
            hint=f"pad at most {length - 1}",
        )
    side = _choice(raw.get("side", "right"), ("right", "left"), f"{where}.side")
    return {"kind": "padding_mask", "pad": pads, "side": side}


def _token_ids(raw, dtype, shape, where) -> dict:
    if dtype not in _INT_BOUNDS or dtype == "bool":
        raise ManifestError(
            f"token ids need an integer dtype, the input is {dtype}", where=f"{where}.kind", hint="set dtype = 'int64'"
        )
    if "vocab_size" not in raw:
        raise ManifestError(
            "missing required key 'vocab_size'", where=f"{where}.vocab_size", hint="the model config's vocab_size"
        )
    vocab = _count(raw["vocab_size"], f"{where}.vocab_size", lo=1)
    if vocab - 1 > _INT_BOUNDS[dtype][1]:
        raise ManifestError(f"ids up to {vocab - 1} do not fit {dtype}", where=f"{where}.vocab_size")
    return {"kind": "token_ids", "vocab_size": vocab}


def _positions(raw, dtype, shape, where) -> dict:
    if dtype == "bool":
        raise ManifestError("positions need a numeric dtype", where=f"{where}.kind")
    start = _count(raw.get("start", 0), f"{where}.start")
    return {"kind": "positions", "start": start}


_PARSERS = {
    "uniform": _uniform,
    "normal": _normal,
    "value": _value,
    "array": _array,
    "image": _image,
    "padding_mask": _padding_mask,
    "token_ids": _token_ids,
    "positions": _positions,
}
