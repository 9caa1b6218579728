"""Run the manifest's pass pipeline on the exported ONNX; write the result beside its weights."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import onnx_graphsurgeon as gs

from trtforge.graph_passes.base import PassContext, Pipeline, import_graph
from trtforge.graph_passes.catalog import make_pass
from trtforge.onnx_files import load_graph_proto, save_model
from trtforge.stage import StageContext


def run_passes(ctx: StageContext, workdir: Path) -> dict:
    src = ctx.inputs["export"]
    model = load_graph_proto(src)
    graph = import_graph(model, src)
    passes = [make_pass(step, f"modules.{ctx.module.name}.passes[{i}]", ctx.root)
              for i, step in enumerate(ctx.module.passes)]
    pipeline = Pipeline(passes)
    nodes_before = len(graph.nodes)
    pipeline.run(graph, PassContext(base_dir=src, module=ctx.module.name))
    out = gs.export_onnx(graph, do_type_check=True)
    out.ir_version = model.ir_version
    out.opset_import.extend([o for o in model.opset_import if o.domain not in {x.domain for x in out.opset_import}])
    save_model(out, src, workdir, new_data="passes.data")
    meta = {"nodes_before": nodes_before, "nodes_after": len(graph.nodes),
            "passes": [asdict(r) for r in pipeline.reports]}
    (workdir / "passes.json").write_text(json.dumps(meta, indent=1))
    return meta
