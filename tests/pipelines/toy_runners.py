"""Runners of the toy pipelines (tests/pipelines/toy.py holds the modules): copied into a package
of their own in the test project, so that editing a runner changes the pipeline's key and not the
modules' (their export keys cover the .py files beside their factory)."""

from __future__ import annotations

import torch


def iterate(m, x0, steps: int = 24, gain: float = 1.0):
    """The runner: `steps` calls of the map, then the decoder (gain 0: a broken, all-black image)."""
    x = x0
    for _ in range(steps):
        x = m.unet(x=x).y
    return {"image": gain * m.decode(x=x).image}


def iterate_wrong_shape(m, x0, steps: int = 2):
    x = torch.cat([x0, x0])  # a batch of 2: the module's engine takes 1
    return {"image": m.unet(x=x).y}


def padded(m, x, mask):
    """One call of a module whose padded positions are undefined; the same tensor checked twice:
    by the tolerances and by a metric."""
    y = m.pad(x=x, mask=mask).y
    return {"y": y, "y_psnr": y}
