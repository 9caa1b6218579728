"""Graph-pass stage: bake caller-side work into the graph, fold constants and static shapes,
clean up. Passes never load external weights they do not read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtforge.cache import digest_file
from trtforge.cache.imports import display, module_files
from trtforge.manifest import ModuleSpec
from trtforge.stage import Stage, StageContext, tool_versions


def user_passes(module: ModuleSpec) -> list[str]:
    """'package.module:Class' of every pass that is not built in."""
    from trtforge.graph_passes.catalog import check_known

    targets = [
        check_known(step, f"modules.{module.name}.passes[{i}]", module.name) for i, step in enumerate(module.passes)
    ]
    return [t for t in targets if not t.startswith("trtforge.")]


@dataclass(frozen=True)
class GraphPassesStage(Stage):
    name: str = "graph_passes"
    # 4: the output passes onnx's full check (legalize_dtypes); 5: fold_constants folds in FP32
    version: str = "graph_passes-5"

    def key_material(self, module: ModuleSpec, root: Path) -> dict:
        # a user pass's own source is found without importing it; what it imports is recorded
        # when it runs (tracks_imports)
        sources = {
            display(p, root): digest_file(p)
            for target in user_passes(module)
            for p in module_files(target.split(":")[0], root)
        }
        return {
            "passes": list(module.passes),
            "check": module.pass_check,
            "pass_sources": sources,
            "tools": tool_versions("onnx", "onnx-graphsurgeon", "onnxruntime", "numpy"),
        }

    def tracks_imports(self, module: ModuleSpec) -> bool:
        return bool(user_passes(module))

    def run(self, ctx: StageContext, workdir: Path) -> dict:
        from trtforge.graph_passes.run import run_passes

        return run_passes(ctx, workdir)
