"""Toy modules and runners for the pipeline tests: small enough to export, build and run in seconds.

`make_logistic` is FP16-hostile only in a way that compounds: one call of the chaotic logistic map
x -> r x (1 - x) is within any module tolerance in FP16 (relative rounding ~5e-4), but a runner
that iterates it 24 times amplifies that rounding by ~e^(0.5 * 24) and the final image is another.
"""

from __future__ import annotations

import torch
from torch import nn


class Logistic(nn.Module):
    def __init__(self, r: float):
        super().__init__()
        self.r = nn.Parameter(torch.tensor(r))

    def forward(self, x):
        return {"y": self.r * x * (1.0 - x)}


class Affine(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x):
        return {"image": self.scale * (2.0 * x - 1.0)}


def make_logistic(r: float = 3.9):
    return Logistic(r)


def make_affine(scale: float = 1.0):
    return Affine(scale)


class PadSpill(nn.Module):
    """Real positions (mask 1) pass through; padded ones (mask 0) are scaled by 1000 twice, beyond
    FP16's range (65504) for |x| > 0.066: in FP32 they are finite, as published they are Inf. A
    caller never reads them (what a left-padded batch's padded logits are): only `valid` says so."""

    def forward(self, x, mask):
        s = 1.0 + (1.0 - mask.to(x.dtype)) * 999.0
        return {"y": x * s * s}


def make_pad_spill():
    return PadSpill()
