"""Graphs for rule tests, written as ONNX text. onnx.parser reads no float16 literals, so graphs
are written in float and `fp16` narrows every FLOAT type, initializer and Constant to FLOAT16."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto, numpy_helper

from tests.conftest import onnx_model
from trtforge.precision_rules.plan import name_unnamed

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'


def _narrow(t: onnx.TensorProto) -> onnx.TensorProto:
    if t.data_type != TensorProto.FLOAT:
        return t
    return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name)


def fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    inits = [_narrow(t) for t in g.initializer]
    del g.initializer[:]
    g.initializer.extend(inits)
    for vi in (*g.input, *g.output, *g.value_info):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                a.t.CopyFrom(_narrow(a.t))
    onnx.checker.check_model(model)
    return model


def model_of(text: str) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(fp16(onnx_model(text)))


def graph_of(text: str) -> gs.Graph:
    """Nodes named '<Op>_<first output>' (as the precision stage names unnamed nodes)."""
    graph = gs.import_onnx(model_of(text))
    name_unnamed(graph)
    return graph
