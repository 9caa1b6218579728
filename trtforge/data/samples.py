"""Example data read from files the manifest names: .npy, .npz (one array, or a whole named set),
PNG/JPEG images. Every problem is a one-line ManifestError naming the field and the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from trtforge.errors import ManifestError

_FLOAT_MAX = {np.dtype(np.float16): 65504.0, np.dtype(np.float32): 3.0e38}
_IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _open_npz(path: Path, shown: str, where: str):
    if not path.is_file():
        raise ManifestError(
            f"'{shown}' does not exist", where=where, hint="paths are relative to the folder of engines.toml"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        # numpy calls any file without its magic "pickled data": trtforge never unpickles either way
        why = (
            "not a .npy/.npz file, or it holds pickled objects"
            if "pickle" in str(e)
            else " ".join(str(e).split())[:200]
        )
        raise ManifestError(
            f"cannot read '{shown}': {why}", where=where, hint="write it with numpy.save / numpy.savez (numbers only)"
        ) from None


def read_array(path: Path, shown: str, key: str, name: str, where: str) -> np.ndarray:
    """The array of a .npy, or of a .npz under `key` (default: its only array, or the input's name)."""
    loaded = _open_npz(path, shown, f"{where}.file")
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded as z:
        names = list(z.files)
        pick = key or (names[0] if len(names) == 1 else name if name in names else "")
        if not pick:
            raise ManifestError(
                f"'{shown}' holds several arrays ({', '.join(names)}) and none is named '{name}'",
                where=f"{where}.key",
                hint="name one with key = '...'",
            )
        if pick not in names:
            raise ManifestError(
                f"'{shown}' has no array '{pick}' (it holds: {', '.join(names) or 'nothing'})",
                where=f"{where}.key",
                hint="set key to one of those names",
            )
        return _member(z, pick, shown, f"{where}.key")


def _member(z, name: str, shown: str, where: str) -> np.ndarray:
    try:
        return z[name]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ManifestError(
            f"cannot read array '{name}' of '{shown}': {' '.join(str(e).split())[:200]}",
            where=where,
            hint="write it with numpy.savez (no pickled objects)",
        ) from None


def fit_dynamic(arr: np.ndarray, shape: tuple, declared: tuple) -> np.ndarray:
    """`arr` cut or repeated along each dynamic axis (a name in the declared shape, e.g. "batch")
    to that axis's size in `shape`: one file serves every profile corner (a [4, 16] file gives a
    batch of 1 its first row, of 2 its first two, of 8 its rows twice over)."""
    if arr.ndim != len(shape) or len(declared) != len(shape):
        return arr
    for axis, (want, name) in enumerate(zip(shape, declared, strict=True)):
        have = arr.shape[axis]
        if not isinstance(name, int) and have not in (1, want) and have > 0:
            arr = np.take(arr, np.arange(want) % have, axis=axis)
    return arr


def conform(
    arr: np.ndarray, dtype: np.dtype, shape: tuple, shown: str, where: str, declared: tuple | None = None
) -> np.ndarray:
    """`arr` as the input's dtype and shape, or an error saying what the file holds. Float data
    never fills an integer or bool input (that would truncate silently); a shape that numpy
    broadcasts to the input's (one row for a batch) is repeated. `declared`: the input's shape as
    the manifest writes it; along its dynamic axes the file may have any length (fit_dynamic)."""
    dtype = np.dtype(dtype)
    held = f"{arr.dtype}{_shape_text(arr.shape)}"
    dynamic = declared is not None and any(not isinstance(d, int) for d in declared)
    if dynamic and declared is not None:
        arr = fit_dynamic(arr, shape, declared)
    if arr.dtype.kind not in "biuf":
        raise ManifestError(f"'{shown}' holds {arr.dtype} values, not numbers", where=where)
    if arr.dtype.kind == "f" and dtype.kind != "f":
        raise ManifestError(
            f"'{shown}' holds {held} (floats); the input is {dtype}",
            where=where,
            hint=f"save {dtype} values (numpy astype) or change the input's dtype",
        )
    try:
        out = np.broadcast_to(arr, shape)
    except ValueError:
        if dynamic and declared is not None:  # the same line for every profile corner: the declared shape
            free = [str(d) for d in declared if not isinstance(d, int)]
            raise ManifestError(
                f"'{shown}' holds {held}; the input is {dtype}{_shape_text(declared)}",
                where=where,
                hint=f"save one array of shape {_shape_text(declared)} with any length along {', '.join(free)} "
                "(cut or repeated to each profile's size)",
            ) from None
        raise ManifestError(
            f"'{shown}' holds {held}; the input is {dtype}{_shape_text(shape)}",
            where=where,
            hint=f"save an array of shape {_shape_text(shape)} (or one that broadcasts to it)",
        ) from None
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise ManifestError(f"'{shown}' holds NaN or Inf", where=where, hint="example data must be finite")
    _check_fits(arr, dtype, shown, where)
    return np.ascontiguousarray(out.astype(dtype))


def _check_fits(arr: np.ndarray, dtype: np.dtype, shown: str, where: str) -> None:
    if not arr.size or arr.dtype == dtype:
        return
    lo, hi = arr.min(), arr.max()
    if dtype.kind == "f":
        ok = max(abs(float(lo)), abs(float(hi))) <= _FLOAT_MAX[dtype]
    elif dtype.kind == "b":
        ok = lo >= 0 and hi <= 1
    else:
        info = np.iinfo(dtype)
        ok = int(lo) >= info.min and int(hi) <= info.max
    if not ok:
        raise ManifestError(
            f"'{shown}' holds values in [{lo}, {hi}], which do not fit {dtype}",
            where=where,
            hint="save values the input's dtype can hold",
        )


def read_image(path: Path, shown: str, source: dict, shape: tuple, dtype: np.dtype, where: str) -> np.ndarray:
    """A PNG/JPEG in the input's layout, resized to its height and width, repeated over the batch;
    float inputs get (pixel * scale - mean) / std per channel, uint8 inputs the raw pixels."""
    try:
        from PIL import Image
    except ImportError:
        raise ManifestError(
            f"reading '{shown}' needs Pillow", where=f"{where}.file", hint="pip install 'trtforge[images]'"
        ) from None
    layout = source["layout"]
    channels, height, width = (shape[layout.index(c)] for c in "CHW")
    if channels not in _IMAGE_MODES:
        raise ManifestError(
            f"layout {layout} puts {channels} channels on axis {layout.index('C')}",
            where=f"{where}.layout",
            hint="an image has 1, 3 or 4 channels",
        )
    if not path.is_file():
        raise ManifestError(
            f"'{shown}' does not exist", where=f"{where}.file", hint="paths are relative to the folder of engines.toml"
        )
    try:
        with Image.open(path) as opened:
            img = opened.convert(_IMAGE_MODES[channels])
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(img, dtype=np.uint8).reshape(height, width, channels)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ManifestError(
            f"cannot read image '{shown}': {' '.join(str(e).split())[:200]}", where=f"{where}.file"
        ) from None
    x: np.ndarray = pixels
    if dtype.kind == "f":
        x = pixels.astype(np.float32) * np.float32(source["scale"])
        x = (x - np.float32(source["mean"])) / np.float32(source["std"])  # broadcast over the channel axis
    hwc = x if layout.endswith("HWC") else np.transpose(x, (2, 0, 1))
    return np.ascontiguousarray(np.broadcast_to(hwc, shape).astype(dtype))


def read_set(path: Path, shown: str, expected: dict[str, tuple[np.dtype, tuple]], where: str) -> dict:
    """A named example set: one .npz holding every input by name ({name: (dtype, shape)})."""
    loaded = _open_npz(path, shown, where)
    if isinstance(loaded, np.ndarray):  # a .npy renamed .npz
        raise ManifestError(
            f"'{shown}' holds one array, not a set of named ones",
            where=where,
            hint="save every input by name with numpy.savez(path, **inputs)",
        )
    with loaded as z:
        names = list(z.files)
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        if missing or extra:
            what = (
                f"has no array for input(s) {', '.join(missing)}"
                if missing
                else f"holds array(s) {', '.join(extra)} that are not inputs"
            )
            raise ManifestError(
                f"'{shown}' {what} (inputs: {', '.join(expected)})",
                where=where,
                hint="save every input under its manifest name, nothing else",
            )
        return {
            n: conform(_member(z, n, shown, where), dt, shape, f"{shown}:{n}", where)
            for n, (dt, shape) in expected.items()
        }
