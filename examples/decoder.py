"""A conv decoder that returns low-resolution segmentation logits; its consumer upsamples them x4
bilinearly. engines.toml bakes that Resize into the engine."""

from __future__ import annotations

import torch
from torch import nn


class Decoder(nn.Module):
    def __init__(self, channels: int = 64, classes: int = 8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
            nn.BatchNorm2d(channels // 2),
            nn.ReLU(),
            nn.Conv2d(channels // 2, channels // 2, 3, padding=1),
            nn.ReLU(),
        )
        self.logits = nn.Conv2d(channels // 2, classes, 1)

    def forward(self, features):
        return self.logits(self.body(features))


def make_decoder(seed: int = 0, **kwargs) -> Decoder:
    torch.manual_seed(seed)
    model = Decoder(**kwargs)
    for m in model.modules():  # non-trivial BatchNorm statistics, as a trained model would have
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model
