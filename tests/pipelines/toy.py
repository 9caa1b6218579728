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
