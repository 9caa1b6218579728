"""Find FP32 computation left inside a natively FP16 export (hard-coded float32 tensors,
`torch.empty` defaults, FP32 buffers): nodes whose float outputs are FLOAT in an FP16 graph.

Each island is attributed to the nn.Module class it was traced in (the dynamo exporter's
`pkg.torch.onnx.class_hierarchy` metadata) and, when that class lives in an installed library
rather than the project (diffusers' timestep embedding computes Sin/Cos in float32 on purpose),
to that library: the warning then says so instead of asking the user to fix library code."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import onnx

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.input, *g.value_info, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def find_fp32_islands(model: onnx.ModelProto) -> list[dict]:
    """Nodes producing FLOAT tensors. Shape-only subgraphs never produce FLOAT, so every hit is
    real arithmetic in FP32 that TensorRT would run in FP32 (or that a Cast hides). Each hit
    names, where the exporter recorded it, the module class (`in`), its scope in the model
    (`scope`, e.g. time_proj) and the installed library that class comes from (`library`, "" for
    the project's own code)."""
    types = tensor_types(model)
    if not any(t == FLOAT16 for t in types.values()):
        return []  # not an FP16 graph: nothing to report
    hits = []
    for node in model.graph.node:
        outs = [o for o in node.output if types.get(o) == FLOAT]
        if outs:
            hits.append({"node": node.name, "op": node.op_type, "outputs": outs, **origin(node)})
    return hits


def origin(node: onnx.NodeProto) -> dict:
    props = {p.key: p.value for p in node.metadata_props}
    try:
        classes = list(ast.literal_eval(props.get("pkg.torch.onnx.class_hierarchy", "[]")))
        scopes = list(ast.literal_eval(props.get("pkg.torch.onnx.name_scopes", "[]")))
    except (ValueError, SyntaxError):
        return {}
    modules = [c for c in classes[:-1] if "." in c]  # the last entry is the op itself (aten.sin.default)
    if not modules:
        return {}
    cls = modules[-1]
    scope = ".".join(s for s in scopes[1:-1] if s)
    return {"in": cls, "scope": scope, "library": library_of(cls.rsplit(".", 1)[0])}


def library_of(modname: str) -> str:
    """The top-level package of `modname` when it is installed code (loaded from site-packages),
    else "" (the project's own code, which the user can fix)."""
    mod = sys.modules.get(modname)
    path = getattr(mod, "__file__", None)
    if not path:
        return ""
    parts = Path(path).parts
    # installed code first: a project's own .venv lies inside its folder
    return modname.split(".")[0] if "site-packages" in parts or "dist-packages" in parts else ""
