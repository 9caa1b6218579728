"""Factories for the bad-input catalogue. Copied into each test project; each one is wrong (or
right) in exactly one way that the matching test names."""

from __future__ import annotations

import torch
from torch import nn


class Tiny(nn.Module):
    """A conv and a ReLU: exports and builds in a few seconds."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def make_tiny(channels: int = 3):
    return Tiny(channels)


def make_raises(depth: int = 3):
    if depth % 2:
        raise ValueError(f"depth must be even, got {depth}")
    return Tiny()


def make_not_module():
    return {"conv": nn.Conv2d(3, 4, 3)}


class DataDependent(nn.Module):
    """A branch on tensor values: no static-shape export can capture it."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


def make_data_dependent():
    return DataDependent()


class Fp32Island(nn.Module):
    """An accumulator made with torch.zeros (float32 by default) inside an FP16 model: the Add
    runs in FP32, a hard-coded FP32 island the export must report."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        acc = torch.zeros(x.shape, device=x.device)
        acc = acc + self.proj(x)
        return acc.to(x.dtype)


def make_fp32_island():
    return Fp32Island()


class Determinant(nn.Module):
    """torch exports Det, which the TensorRT(-RTX) ONNX parser does not implement."""

    def forward(self, x):
        return torch.linalg.det(x)


def make_det():
    return Determinant()


class NotATensor:
    """Pickled into a checkpoint: weights_only=True must refuse to unpickle it."""


def make_from_checkpoint(path: str):
    from pathlib import Path

    from trtforge.export.checkpoint import load_state_dict

    model = Tiny()
    model.load_state_dict(load_state_dict(Path(__file__).parent / path))
    return model


def write_bad_checkpoint(path):
    torch.save({"conv.weight": NotATensor()}, path)


class Bailout(BaseException):
    """Not an Exception: `except Exception` lets it through."""


def make_base_exception():
    raise Bailout("the factory gave up")


def make_sys_exit(code: int = 0):
    import sys

    sys.exit(code)


def make_chdir(to: str = "elsewhere"):
    """Moves the process's working folder, as some model zoos do while loading weights."""
    import os
    from pathlib import Path

    target = Path(__file__).parent / to
    target.mkdir(exist_ok=True)
    os.chdir(target)
    return Tiny()


def make_noisy():
    """Writes past Python's sys.stdout/sys.stderr: raw fds 1 and 2 and a child process."""
    import os
    import subprocess

    os.write(1, b"RAW-FD1 from the factory\n")
    os.write(2, b"RAW-FD2 from the factory\n")
    print("PRINTED from the factory")
    subprocess.run(["echo", "CHILD from the factory"], check=True)
    return Tiny()
