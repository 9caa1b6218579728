"""One engine kept loaded for many calls (a pipeline calls its UNet N times): polygraphy's
TrtRunner, which copies inputs and executes on one CUDA stream, each call under the optimization
profile that holds its shapes. Runs only where `engine_check.why_not_runnable` says None; this
machine has no GPU, so it is exercised by the GPU lane only (tests/verify/test_gpu.py's marker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trtforge import backends as be
from trtforge.verify.engine_check import profile_of


class EngineSession:
    label = "engine"

    def __init__(self, engine_path: Path, backend: str, profiles: list[dict] | None = None):
        be.select(backend)
        from polygraphy.backend.common import bytes_from_path
        from polygraphy.backend.trt import TrtRunner, engine_from_bytes

        self.profiles = profiles or []
        self.runner = TrtRunner(engine_from_bytes(bytes_from_path(str(engine_path))))
        self.runner.activate()
        self.profile = 0

    def __call__(self, feeds: dict) -> dict:
        if len(self.profiles) > 1:
            want = profile_of(feeds, self.profiles)
            if want != self.profile:
                self.runner.set_profile(want)
                self.profile = want
        return {k: np.array(v) for k, v in self.runner.infer(feeds).items()}

    def close(self) -> None:
        self.runner.deactivate()
