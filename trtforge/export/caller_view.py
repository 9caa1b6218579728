"""The caller's view of a module: the manifest's baking passes applied with torch's own ops to the
example inputs and the FP32 reference. Baked graphs are checked against this, not against
themselves (a baked Resize is compared with torch.nn.functional.interpolate)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from trtforge.errors import ExportError
from trtforge.io_transforms import inverse

TORCH_MODES = {"nearest": "nearest", "linear": {3: "linear", 4: "bilinear", 5: "trilinear"}, "cubic": {4: "bicubic"}}


def _mode(t: dict, rank: int, module: str) -> str:
    m = TORCH_MODES[t["mode"]]
    if isinstance(m, dict):
        if rank not in m:
            raise ExportError(f"{t['mode']} resize of a rank-{rank} output is not supported",
                              where=f"modules.{module}.passes (bake_resize {t['tensor']})", module=module)
        return m[rank]
    return m


def caller_view(transforms: list[dict], inputs: dict, reference: dict, module: str) -> tuple[dict, dict]:
    inputs, reference = dict(inputs), dict(reference)
    for t in transforms:
        pool = inputs if t["kind"] == "transpose_input" else reference
        if t["tensor"] not in pool:
            kind = "input" if t["kind"] == "transpose_input" else "output"
            raise ExportError(f"the module has no {kind} '{t['tensor']}' (its {kind}s: {', '.join(pool)})",
                              where=f"modules.{module}.passes", module=module)
        x = pool[t["tensor"]]
        if t["kind"] in ("transpose_input", "transpose_output") and x.ndim != len(t["perm"]):
            raise ExportError(f"perm {t['perm']} has {len(t['perm'])} axes but '{t['tensor']}' has rank {x.ndim}",
                              where=f"modules.{module}.passes", module=module)
        if t["kind"] == "transpose_input":
            # the caller holds c with c.permute(perm) == x
            inputs[t["tensor"]] = np.ascontiguousarray(np.transpose(x, inverse(t["perm"])))
        elif t["kind"] == "transpose_output":
            reference[t["tensor"]] = np.ascontiguousarray(np.transpose(x, t["perm"]))
        else:
            y = torch.from_numpy(x)
            kwargs = {"mode": _mode(t, y.ndim, module)}
            if t["mode"] != "nearest":
                kwargs["align_corners"] = t["align_corners"]
            if t["size"] is not None:
                kwargs["size"] = tuple(t["size"])
            else:
                kwargs["scale_factor"] = t["scale"]
            reference[t["tensor"]] = F.interpolate(y, **kwargs).numpy()
    return inputs, reference
