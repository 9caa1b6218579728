"""Run a pass on ONNX text and compare ONNX Runtime outputs before and after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort

from tests.conftest import onnx_model
from trtforge.graph_passes.base import PassContext, Pipeline
from trtforge.graphs.files import import_graph


def ort_run(model: onnx.ModelProto, feeds: dict) -> dict:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def to_model(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    out = gs.export_onnx(graph.copy().toposort(), do_type_check=True)
    out.ir_version = like.ir_version
    del out.opset_import[:]
    out.opset_import.extend(like.opset_import)
    onnx.checker.check_model(out)
    return out


def apply(text: str | onnx.ModelProto, *passes, base_dir: Path = Path(".")):
    """(model before, model after, modified, pipeline) for `passes` run on the model."""
    model = onnx_model(text) if isinstance(text, str) else text
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    graph = import_graph(inferred, base_dir)
    pipe = Pipeline(list(passes))
    modified = pipe.run(graph, PassContext(base_dir=base_dir))
    return model, to_model(graph, model), modified, pipe


def feeds_of(model: onnx.ModelProto, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        tt = vi.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        shape = [d.dim_value for d in tt.shape.dim]
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.uniform(-2, 2, size=shape).astype(dtype)
        else:
            feeds[vi.name] = rng.integers(0, 255, size=shape).astype(dtype)
    return feeds


def assert_same_outputs(before: onnx.ModelProto, after: onnx.ModelProto, exact: bool = True) -> dict:
    feeds = feeds_of(before)
    a, b = ort_run(before, feeds), ort_run(after, feeds)
    assert set(a) == set(b)
    for k in a:
        if exact:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-3, atol=1e-3, err_msg=k)
    return a


def ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]
