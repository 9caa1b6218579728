"""The caller's view of a module: the manifest's baking passes applied with torch's own ops to the
example inputs and the FP32 reference. Baked graphs are checked against this, not against
themselves (a baked Resize is compared with torch.nn.functional.interpolate)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trtforge.data.transforms import inverse, preprocess_perm
from trtforge.errors import ExportError

TORCH_MODES: dict[str, Any] = {
    "nearest": "nearest",
    "linear": {3: "linear", 4: "bilinear", 5: "trilinear"},
    "cubic": {4: "bicubic"},
}


def _mode(t: dict, rank: int, module: str) -> str:
    m = TORCH_MODES[t["mode"]]
    if isinstance(m, dict):
        if rank not in m:
            raise ExportError(
                f"{t['mode']} resize of a rank-{rank} output is not supported",
                where=f"modules.{module}.passes (bake_resize {t['tensor']})",
                module=module,
            )
        return m[rank]
    return m


def _check_resized_size(t: dict, shape: tuple, module: str) -> None:
    """The resized reference is made in FP32 here: refuse one past the input limit before torch
    allocates it (a scale of 64 on a large output is tens of GiB)."""
    from trtforge.manifest.limits import MAX_INPUT_BYTES

    spatial = t["size"] or [int(d * t["scale"]) for d in shape[2:]]
    size = math.prod(shape[:2]) * math.prod(spatial) * 4
    if size > MAX_INPUT_BYTES:
        raise ExportError(
            f"the resized '{t['tensor']}' would be {size / (1 << 30):.3g} GiB in FP32; the "
            f"limit is {MAX_INPUT_BYTES / (1 << 30):.3g} GiB",
            where=f"modules.{module}.passes (bake_resize {t['tensor']})",
            module=module,
            hint="use a smaller scale or size",
        )


def preprocess(t: dict, image: np.ndarray, dtype) -> np.ndarray:
    """torchvision's ToTensor + Normalize, in FP32, then the module input's dtype."""
    x = torch.from_numpy(image).float() * t["scale"]
    mean, std = torch.tensor(t["mean"]), torch.tensor(t["std"])
    x = x.permute(*preprocess_perm(x.ndim))
    shape = [-1, 1, 1]
    return ((x - mean.reshape(shape)) / std.reshape(shape)).to(TORCH_DTYPES[np.dtype(dtype)]).contiguous().numpy()


TORCH_DTYPES = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}


def preprocessed_inputs(
    transforms: list[dict], inputs: dict, seed: int, module: str, given: dict | None = None
) -> tuple[dict, dict]:
    """For each baked preprocessing: the caller's uint8 image (channels last), `given` or seeded,
    and the module's input computed from it with torch. The reference then runs on exactly that."""
    inputs, images = dict(inputs), {}
    for t in transforms:
        if t["kind"] != "preprocess_input":
            continue
        x = inputs.get(t["tensor"])
        where = f"modules.{module}.passes (bake_preprocess {t['tensor']})"
        if x is None:
            raise ExportError(
                f"the module has no input '{t['tensor']}' (its inputs: {', '.join(inputs)})", where=where, module=module
            )
        if x.ndim not in (3, 4) or np.dtype(x.dtype) not in TORCH_DTYPES:
            raise ExportError(
                f"input '{t['tensor']}' must be a float16/float32 (N, C, H, W) or (C, H, W) "
                f"image, is {x.dtype}{list(x.shape)}",
                where=where,
                module=module,
            )
        shape = [x.shape[i] for i in inverse(preprocess_perm(x.ndim))]
        image = (given or {}).get(t["tensor"])
        if image is None:
            image = np.random.default_rng(seed).integers(0, 256, size=shape).astype(np.uint8)
        images[t["tensor"]] = image
        inputs[t["tensor"]] = preprocess(t, image, x.dtype)
    return inputs, images


def caller_view(
    transforms: list[dict], inputs: dict, reference: dict, module: str, images: dict | None = None
) -> tuple[dict, dict]:
    inputs, reference = dict(inputs), dict(reference)
    for t in transforms:
        if t["kind"] == "preprocess_input":
            inputs[t["tensor"]] = (images or {})[t["tensor"]]
            continue
        pool = inputs if t["kind"] == "transpose_input" else reference
        if t["tensor"] not in pool:
            kind = "input" if t["kind"] == "transpose_input" else "output"
            raise ExportError(
                f"the module has no {kind} '{t['tensor']}' (its {kind}s: {', '.join(pool)})",
                where=f"modules.{module}.passes",
                module=module,
            )
        x = pool[t["tensor"]]
        if t["kind"] in ("transpose_input", "transpose_output") and x.ndim != len(t["perm"]):
            raise ExportError(
                f"perm {t['perm']} has {len(t['perm'])} axes but '{t['tensor']}' has rank {x.ndim}",
                where=f"modules.{module}.passes",
                module=module,
            )
        if t["kind"] == "transpose_input":
            # the caller holds c with c.permute(perm) == x
            inputs[t["tensor"]] = np.ascontiguousarray(np.transpose(x, inverse(t["perm"])))
        elif t["kind"] == "transpose_output":
            reference[t["tensor"]] = np.ascontiguousarray(np.transpose(x, t["perm"]))
        else:
            y = torch.from_numpy(x)
            kwargs: dict[str, Any] = {"mode": _mode(t, y.ndim, module)}
            if t["mode"] != "nearest":
                kwargs["align_corners"] = t["align_corners"]
            if t["size"] is not None:
                kwargs["size"] = tuple(t["size"])
            else:
                kwargs["scale_factor"] = t["scale"]
            _check_resized_size(t, x.shape, module)
            reference[t["tensor"]] = F.interpolate(y, **kwargs).numpy()
    return inputs, reference
