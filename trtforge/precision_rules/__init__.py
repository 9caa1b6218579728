"""Precision stage: select the nodes that must stay FP32 and realise the plan (Cast nodes for
strongly typed TensorRT 11 / TensorRT-RTX; a layer-precision plan for weakly typed TensorRT 10)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtforge.errors import PrecisionError
from trtforge.manifest import ModuleSpec
from trtforge.stage import Stage, StageContext, tool_versions


def resolve_realizer(module: ModuleSpec) -> str:
    """`auto` writes Casts: every backend trtforge targets can build strongly typed networks.
    `layer_precision` keeps the ONNX FP16 and hands the plan to a weakly typed TensorRT 10 build."""
    choice = module.precision.realizer
    if choice == "layer_precision" and module.build.backend == "tensorrt-rtx":
        raise PrecisionError(
            "TensorRT-RTX has no weak typing; layer_precision cannot be realised",
            where=f"modules.{module.name}.precision.realizer",
            module=module.name,
            hint="use realizer = 'casts' or 'auto'",
        )
    return "casts" if choice == "auto" else choice


@dataclass(frozen=True)
class PrecisionStage(Stage):
    name: str = "precision_rules"
    version: str = "precision-3"  # 3: masks widened only on a Softmax's mask path; activation_range skips masks

    def key_material(self, module: ModuleSpec, root: Path) -> dict:
        return {
            "rules": list(module.precision_rules),
            "realizer": resolve_realizer(module),
            "tools": tool_versions("onnx", "onnx-graphsurgeon", "numpy"),
        }

    def run(self, ctx: StageContext, workdir: Path) -> dict:
        from trtforge.precision_rules.run import run_precision

        return run_precision(ctx, workdir, resolve_realizer(ctx.module))
