"""Factories for the round-three catalogue (issue 28): a module whose input and output share a
name (diffusers' UNet: `sample` in, `.sample` out) and one whose forward returns an int."""

from torch import nn


class FeedsItself(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, sample):
        return {"sample": self.proj(sample)}


def make_feeds_itself():
    return FeedsItself()


class ReturnsInt(nn.Module):
    def forward(self, x):
        return 3


def make_returns_int():
    return ReturnsInt()
