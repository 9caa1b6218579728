"""What the caller does around the module, declared by baking passes in the manifest.

Both sides read this one vocabulary: the export stage applies each transform with torch to the
example inputs and FP32 reference (the caller's view), and the graph passes bake it into the ONNX.
So a baked Resize is checked against torch's own interpolate, not against itself.

  bake_transpose {input=NAME, perm=[...]}   the caller holds c; the module wants c.permute(perm)
  bake_transpose {output=NAME, perm=[...]}  the caller receives y.permute(perm)
  bake_resize {output=NAME, scale=S | size=[H, W], mode=nearest|linear|cubic, align_corners=bool}
  bake_preprocess {input=NAME, mean=[...], std=[...], scale=1/255}
                                            the caller holds a uint8 image c, channels last; the
                                            module wants ((c * scale - mean) / std) channels first
"""

from __future__ import annotations

import math

from trtforge.errors import ManifestError, PassError

MODES = ("nearest", "linear", "cubic")
# a baked resize is computed with torch on the reference at export: bound it before it allocates
MAX_SCALE = 64
MAX_SIZE = 1 << 15


def inverse(perm: list[int]) -> list[int]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


def _perm(value, where: str) -> list[int]:
    if (
        not isinstance(value, list)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or sorted(value) != list(range(len(value)))
    ):
        raise ManifestError(
            f"perm {value!r} is not a permutation of 0..{len(value) - 1 if isinstance(value, list) else 'N'}",
            where=where,
            hint="e.g. perm = [0, 3, 1, 2] for NHWC -> NCHW",
        )
    return list(value)


def parse(step: dict, where: str) -> dict | None:
    """The normalised transform a pass step declares, or None for passes that keep the I/O."""
    name = step["name"]
    if name == "bake_transpose":
        ends = [k for k in ("input", "output") if k in step]
        if len(ends) != 1 or not isinstance(step[ends[0]], str):
            raise ManifestError("bake_transpose needs exactly one of input = NAME or output = NAME", where=where)
        return {
            "kind": f"transpose_{ends[0]}",
            "tensor": step[ends[0]],
            "perm": _perm(step.get("perm"), f"{where}.perm"),
        }
    if name == "bake_resize":
        if not isinstance(step.get("output"), str):
            raise ManifestError("bake_resize needs output = NAME", where=where)
        mode = step.get("mode", "linear")
        if mode not in MODES:
            raise ManifestError(f"mode '{mode}' is not one of {', '.join(MODES)}", where=f"{where}.mode")
        scale, size = step.get("scale"), step.get("size")
        if (scale is None) == (size is None):
            raise ManifestError("bake_resize needs exactly one of scale or size", where=where)
        if scale is not None and (
            isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= MAX_SCALE
        ):
            raise ManifestError(
                f"scale must be a positive number up to {MAX_SCALE}, got {scale!r}", where=f"{where}.scale"
            )
        if size is not None and (
            not isinstance(size, list)
            or not 1 <= len(size) <= 3
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_SIZE for s in size)
        ):
            raise ManifestError(
                f"size must be a list of 1 to 3 integers in 1..{MAX_SIZE} (the spatial dimensions), got {size!r}",
                where=f"{where}.size",
            )
        align = step.get("align_corners", False)
        if not isinstance(align, bool):
            raise ManifestError("align_corners must be true or false", where=f"{where}.align_corners")
        if align and mode == "nearest":
            raise ManifestError("align_corners applies to linear and cubic only", where=where)
        return {
            "kind": "resize_output",
            "tensor": step["output"],
            "mode": mode,
            "scale": float(scale) if scale is not None else None,
            "size": list(size) if size is not None else None,
            "align_corners": align,
        }
    if name == "bake_preprocess":
        return _parse_preprocess(step, where)
    return None


def preprocess_perm(rank: int) -> list[int]:
    """Channels last (the caller's image) -> channels first (the module's input)."""
    return [0, 3, 1, 2] if rank == 4 else [2, 0, 1]


def preprocess_affine(mean, std, scale: float, channels: int, where: str) -> tuple:
    """(image * scale - mean) / std as image * mul + add, per channel (float64)."""
    import numpy as np  # here: a no-op build reads this module's key material and never needs numpy

    mean, std = np.asarray(mean, np.float64).reshape(-1), np.asarray(std, np.float64).reshape(-1)
    if mean.size == 1:
        mean = np.repeat(mean, channels)
    if std.size == 1:
        std = np.repeat(std, channels)
    if mean.size != channels or std.size != channels:
        raise PassError(
            f"mean has {mean.size} and std {std.size} values but the input has {channels} channels", where=where
        )
    return scale / std, -mean / std


def _numbers(value, where: str) -> list[float]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise ManifestError(f"expected a non-empty list of numbers, all finite, got {value!r}", where=where)
    return [float(v) for v in value]


def _parse_preprocess(step: dict, where: str) -> dict:
    if not isinstance(step.get("input"), str):
        raise ManifestError("bake_preprocess needs input = NAME", where=where)
    mean, std = _numbers(step.get("mean"), f"{where}.mean"), _numbers(step.get("std"), f"{where}.std")
    if any(s == 0 for s in std):
        raise ManifestError("std must not contain 0", where=f"{where}.std")
    scale = step.get("scale", 1 / 255)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
        raise ManifestError(f"scale must be a positive number, got {scale!r}", where=f"{where}.scale")
    return {"kind": "preprocess_input", "tensor": step["input"], "mean": mean, "std": std, "scale": float(scale)}


def transforms(passes, module: str) -> list[dict]:
    out = []
    for i, step in enumerate(passes):
        t = parse(step, f"modules.{module}.passes[{i}]")
        if t is not None:
            out.append(t)
    return out
