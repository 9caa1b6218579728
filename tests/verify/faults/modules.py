"""Modules with a known fault (copied into a temp project by the tests and named in its manifest)."""

import torch
import torch.nn as nn


class Attention(nn.Module):
    """Single-head attention whose Q·Kᵀ scores (about 1e5) exceed the FP16 limit 65504: fine with the
    attention_score rule keeping the score MatMul and Softmax in FP32, NaN everywhere without it."""

    def __init__(self, dim: int = 32, gain: float = 300.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        with torch.no_grad():
            for layer in (self.q, self.k, self.v):
                layer.weight.copy_(torch.randn(dim, dim, generator=g) / dim**0.5)
            self.q.weight.mul_(gain)
            self.k.weight.mul_(gain)

    def forward(self, x):
        scores = self.q(x) @ self.k(x).transpose(-1, -2)
        return scores.softmax(-1) @ self.v(x)


class ArangePositions(nn.Module):
    """An export bug: positions made by arange in the input's dtype are exact in the FP32 reference
    but rounded above 2048 in the FP16 export, so sin(position) differs by O(1)."""

    def forward(self, x):
        pos = torch.arange(x.shape[-1], device=x.device, dtype=x.dtype)
        return x + torch.sin(pos)


class Segmenter(nn.Module):
    """A tiny mask head: per-pixel logits over 3 classes, for task-metric tests."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def make_attention(**kw):
    return Attention(**kw)


def make_arange():
    return ArangePositions()


def make_segmenter():
    return Segmenter()
