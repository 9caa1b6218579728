"""Loading weights in a factory, safely: `torch.load(weights_only=True)` unpickles tensors and plain
containers only, never arbitrary objects (a pickled checkpoint can otherwise run code on load).

    from trtforge.export.checkpoint import load_state_dict
    model.load_state_dict(load_state_dict(root / "weights/vit.pt"))
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from trtforge.errors import ExportError


def load_state_dict(path: str | Path, map_location: str = "cpu") -> dict:
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ExportError(
            "checkpoint not found",
            where=str(path),
            hint="check the path (relative paths resolve from the current folder)",
        ) from None
    except pickle.UnpicklingError as e:
        raise ExportError(
            "checkpoint holds objects other than tensors, which weights_only=True refuses to unpickle",
            where=str(path),
            hint="re-save it with torch.save(model.state_dict(), path)",
        ) from e
