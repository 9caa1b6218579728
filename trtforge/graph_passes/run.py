"""Run the manifest's pass pipeline on the exported ONNX; write the result beside its weights.

The graph is imported without its weights (external tensors stay lazy references into their
files) with shapes inferred, so shape-driven passes see static shapes. Meaning checks
(`pass_check`: each | pipeline | off) run ONNX Runtime on the recorded example inputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from trtforge.artifacts import ExportFiles, GraphPassesFiles, npz, reproducible
from trtforge.cache.testhooks import checkpoint
from trtforge.data.tensors import load_arrays, same_arrays, save_arrays
from trtforge.errors import PassError
from trtforge.graph_passes.base import PassContext, Pipeline, import_graph
from trtforge.graph_passes.catalog import make_pass
from trtforge.graph_passes.legalize_dtypes import describe, mixed_nodes
from trtforge.graphs.files import EVALUATED, check_full, load_graph_proto, save_model, weight_bytes
from trtforge.stage import StageContext

# Above this many bytes of weights, `pass_check = "each"` evaluates each run of passes end to end
# and evaluates single passes only to localise a failure: one node-by-node evaluation of an SD1.5
# UNet costs ~15-60 s on 2 cores, and its default pass list has 5 passes that modify it.
END_TO_END_BYTES = 256 << 20


def recorded_inputs(folder: Path) -> list[dict]:
    """The export stage's example inputs, then the caller's view of them."""
    return [
        load_arrays(folder / f)
        for f in (npz(ExportFiles.INPUTS), npz(ExportFiles.CALLER_INPUTS))
        if (folder / f).exists()
    ]


def run_pipeline(
    src: Path,
    workdir: Path,
    steps,
    *,
    check: str = "off",
    module: str = "",
    root: Path | None = None,
    recorded: list[dict] | None = None,
    end_to_end: bool | None = None,
    incremental: bool | None = None,
) -> dict:
    """Passes `steps` (manifest tables) on `src`/model.onnx into `workdir`; returns the report.
    `end_to_end` (default: by weight size) and `incremental` (default: meaning.OrtChecker's)
    override how the checks run (bench/check_cost.py compares them)."""
    model = load_graph_proto(src)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    graph = import_graph(inferred, src)
    passes = [make_pass(step, f"modules.{module}.passes[{i}]", root) for i, step in enumerate(steps)]
    if end_to_end is None:
        end_to_end = weight_bytes(model) > END_TO_END_BYTES
    pipeline = Pipeline(passes, check=check, end_to_end=end_to_end)
    checker = None
    if check != "off":
        from trtforge.graph_passes.meaning import OrtChecker

        checker = OrtChecker(src, recorded or [], like=model, incremental=incremental)
        pipeline.checker, pipeline.snapshot = checker, checker.snapshot
        first = checker.snapshot(graph)
    nodes_before = len(graph.nodes)
    pipeline.run(graph, PassContext(base_dir=src, module=module))
    if checker is not None:
        _keep_evaluated(checker, {"export": first, "graph_passes": checker.snapshot(graph)}, recorded or [], workdir)
    checkpoint("work:graph_passes")
    out = gs.export_onnx(graph, do_type_check=True)
    out.ir_version = model.ir_version
    out.opset_import.extend([o for o in model.opset_import if o.domain not in {x.domain for x in out.opset_import}])
    save_model(out, src, workdir, new_data="passes.data")
    check_valid(out, graph, [p.name for p in passes], module)
    meta = {
        "nodes_before": nodes_before,
        "nodes_after": len(graph.nodes),
        "check": check,
        "passes": [asdict(r) for r in pipeline.reports],
    }
    if checker is not None:  # nodes the meaning checks ran, both sides (graph_passes/incremental.py)
        meta["check_nodes_evaluated"] = checker.nodes_evaluated
    (workdir / GraphPassesFiles.META).write_text(json.dumps(reproducible(meta), indent=1))
    return meta


def check_valid(model: onnx.ModelProto, graph: gs.Graph, names: list[str], module: str) -> None:
    """Every later stage and the TensorRT parser read this graph: it passes onnx's full check, or
    the build stops here naming the node (an export that mixes dtypes needs legalize_dtypes)."""
    try:
        check_full(model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        mixed = mixed_nodes(graph)
        what = describe(*mixed[0]) if mixed else " ".join(str(e).split())[:400]
        hint = (
            "a pass after legalize_dtypes mixed them"
            if "legalize_dtypes" in names
            else 'add { name = "legalize_dtypes" } first in the module\'s passes (the default list has it)'
        )
        raise PassError(
            f"the graph after the passes fails onnx's full check: {what}",
            where=f"modules.{module}.passes",
            module=module or None,
            hint=hint if mixed else "a pass wrote an invalid graph",
        ) from e


def _keep_evaluated(checker, graphs: dict, recorded: list[dict], workdir: Path) -> None:
    """Outputs the check computed on exactly a recorded example set are kept for the verify stage."""
    for stage, model in graphs.items():
        done = checker.outputs_of(model)
        if done is None:
            continue
        feeds, outputs = done
        if any(same_arrays(feeds, r) for r in recorded):
            save_arrays(
                workdir / EVALUATED[stage],
                {**{f"in:{k}": v for k, v in feeds.items()}, **{f"out:{k}": v for k, v in outputs.items()}},
            )


def run_passes(ctx: StageContext, workdir: Path) -> dict:
    src = ctx.inputs.export.folder
    return run_pipeline(
        src,
        workdir,
        ctx.module.passes,
        check=ctx.module.pass_check,
        module=ctx.module.name,
        root=ctx.root,
        recorded=recorded_inputs(src),
    )
