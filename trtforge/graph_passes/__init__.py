"""Graph-pass stage: bake caller-side work into the graph, fold constants and static shapes,
clean up. Passes never load external weights they do not read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtforge.manifest import ModuleSpec
from trtforge.stage import StageContext, tool_versions

@dataclass(frozen=True)
class GraphPassesStage:
    name: str = "graph_passes"
    version: str = "graph_passes-4"  # 4: the output passes onnx's full check (legalize_dtypes)

    def key_material(self, module: ModuleSpec, root: Path) -> dict:
        from trtforge.graph_passes.catalog import check_known

        for i, step in enumerate(module.passes):
            check_known(step, f"modules.{module.name}.passes[{i}]", module.name)
        return {"passes": list(module.passes), "check": module.pass_check,
                "tools": tool_versions("onnx", "onnx-graphsurgeon", "onnxruntime", "numpy")}

    def run(self, ctx: StageContext, workdir: Path) -> dict:
        from trtforge.graph_passes.run import run_passes

        return run_passes(ctx, workdir)
