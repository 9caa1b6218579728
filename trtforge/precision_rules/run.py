"""Apply the precision rules to the post-pass ONNX and realise the plan."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from trtforge.artifacts import ExportFiles, PrecisionFiles, npz
from trtforge.cache.testhooks import checkpoint
from trtforge.data.tensors import load_arrays
from trtforge.errors import InternalError, PrecisionError
from trtforge.graphs.files import check_full, import_graph, load_graph_proto, save_model
from trtforge.precision_rules.cast_realizer import realize_casts
from trtforge.precision_rules.catalog import make_rule
from trtforge.precision_rules.flops import fp16_flop_share
from trtforge.precision_rules.fp32_probe import Probe
from trtforge.precision_rules.plan import PrecisionPlan, name_unnamed
from trtforge.stage import StageContext


def typed_graph(folder: Path):
    """The graph with every tensor's dtype and shape inferred (weights stay on disk)."""
    model = load_graph_proto(folder)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    return model, import_graph(inferred, folder)


def _probe(ctx: StageContext, model: onnx.ModelProto, src: Path) -> Probe | None:
    """FP32 activations for data-driven rules, on the caller-view example inputs (the inputs of
    the post-pass graph). Computed only when a rule asks (the Probe is lazy)."""
    if "export" not in ctx.inputs:
        return None
    return Probe(model, src, load_arrays(ctx.inputs.export.folder / npz(ExportFiles.CALLER_INPUTS)))


def _at_example_shapes(ctx: StageContext, model: onnx.ModelProto, folder: Path):
    """Dynamic dims: the graph with its inputs fixed at the example set's shapes (a profile's opt),
    so that MatMul/Conv FLOPs, which need concrete shapes, are counted at that point."""
    arrays = load_arrays(ctx.inputs.export.folder / npz(ExportFiles.CALLER_INPUTS))
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for vi in fixed.graph.input:
        if vi.name in arrays:
            for d, n in zip(vi.type.tensor_type.shape.dim, arrays[vi.name].shape):
                d.Clear()
                d.dim_value = int(n)
    graph = import_graph(onnx.shape_inference.infer_shapes(fixed, data_prop=True), folder)
    name_unnamed(graph)  # the same names as the plan's graph
    return graph


def run_precision(ctx: StageContext, workdir: Path, realizer: str) -> dict:
    src = ctx.inputs.graph_passes.folder
    model, graph = typed_graph(src)
    name_unnamed(graph)  # a plan is keyed by node name
    plan = PrecisionPlan()
    probe = _probe(ctx, model, src)
    for i, step in enumerate(ctx.module.precision_rules):
        where = f"modules.{ctx.module.name}.precision.rules[{i}]"
        try:
            plan.add(make_rule(step, where).select(graph, probe), graph)
        except PrecisionError as e:
            e.module = ctx.module.name
            if not (e.where or "").startswith("modules."):  # a rule knows its parameter, not its place
                e.where = where + (f" ({e.where})" if e.where else "")
            raise
    checkpoint("work:precision_rules")
    names = set(plan.fp32)
    share = fp16_flop_share(_at_example_shapes(ctx, model, src) if ctx.module.profiles else graph, names)
    casts = {}
    if realizer == "casts":
        casts = realize_casts(graph, names)
    out = gs.export_onnx(graph, do_type_check=True)
    out.ir_version = model.ir_version
    save_model(out, src, workdir, new_data="precision.data")
    try:  # the graph_passes stage hands over a graph that passes this check (legalize_dtypes)
        check_full(out)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:  # a realiser bug
        raise InternalError(f"precision realiser produced an ill-typed graph: {e}") from e
    meta = {
        "realizer": realizer,
        **plan.as_json(),
        "flops": share,
        "casts": casts,
        "fp32_ops": sorted({v["op"] for v in plan.fp32.values() if v["op"]}),
    }
    (workdir / PrecisionFiles.PLAN).write_text(json.dumps(meta, indent=1))
    return meta
