"""Verify stage: compare every stage's artifact with the FP32 PyTorch reference on the same inputs
and attribute the first failure to a stage (export, passes, precision, or the engine's kernels)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtforge.build import backend as be
from trtforge.manifest import ModuleSpec
from trtforge.stage import StageContext, tool_versions


@dataclass(frozen=True)
class VerifyStage:
    name: str = "verify"
    version: str = "verify-2"

    def key_material(self, module: ModuleSpec, root: Path) -> dict:
        # the GPUs present decide whether the engine can run here, so they are part of the key
        return {"verify": module.verify, "verify_outputs": module.verify_outputs,
                "gpus": [vars(g) for g in be.gpus()],
                "tools": tool_versions("onnxruntime", "onnxruntime-gpu", "numpy")}

    def run(self, ctx: StageContext, workdir: Path) -> dict:
        from trtforge.verify.run import verify_module

        return verify_module(ctx, workdir)
