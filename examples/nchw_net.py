"""A small conv classifier that expects NCHW while its caller holds NHWC images. engines.toml bakes
the NHWC -> NCHW Transpose into the engine's input."""

from __future__ import annotations

import torch
from torch import nn


class NchwNet(nn.Module):
    def __init__(self, classes: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(64, classes)

    def forward(self, image):
        return self.head(self.features(image).mean(dim=(2, 3)))


def make_nchw_net(seed: int = 0, **kwargs) -> NchwNet:
    torch.manual_seed(seed)
    return NchwNet(**kwargs)
