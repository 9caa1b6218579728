"""An FP16-hostile attention model: in chosen blocks the attention scores leave the FP16 range.

Each head of a hostile block gets a query and key component fixed at 512 (zero weights, bias 512,
exact in FP16), so every score is 512*512 = 262144 plus the ordinary q.k term. In FP32 that
constant cancels in the softmax and the block behaves; stored in FP16 the score MatMul gives inf
(max 65504), the softmax inf - inf = NaN, and every output turns NaN. This is the failure a fused
FP16 attention kernel produces on real ViTs (scores of 3.8e5 measured in three blocks of one).
With `scaled_dot_product_attention` torch scales Q and K by sqrt(scale) each before the MatMul:
256*256 = 65536 still overflows.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

HOSTILE = 512.0  # exact in FP16; 512*512 and (512/2)*(512/2) both exceed 65504


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, hostile: bool, sdpa: bool):
        super().__init__()
        self.heads, self.scale, self.sdpa = heads, (dim // heads) ** -0.5, sdpa
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        if hostile:
            hd = dim // heads
            with torch.no_grad():
                for h in range(heads):
                    for row in (h * hd, dim + h * hd):  # dim 0 of each head's q and k
                        self.qkv.weight[row].zero_()
                        self.qkv.bias[row] = HOSTILE

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hostile: bool, sdpa: bool):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, hostile, sdpa)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HostileEncoder(nn.Module):
    """Tokens in, tokens and a pooled vector out; `hostile` lists the blocks whose scores overflow."""

    def __init__(self, dim: int = 32, heads: int = 2, depth: int = 3, hostile=(1,), sdpa: bool = False):
        super().__init__()
        self.blocks = nn.Sequential(*[Block(dim, heads, i in hostile, sdpa) for i in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens):
        x = self.norm(self.blocks(tokens))
        return x.mean(dim=1), x


def make_hostile(seed: int = 0, **kwargs) -> HostileEncoder:
    torch.manual_seed(seed)
    return HostileEncoder(**kwargs)
