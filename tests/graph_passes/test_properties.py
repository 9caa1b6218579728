"""Property: on random small graphs (elementwise ops, Identity/Dropout, exact and lossy Cast pairs,
constant Slices, Squeeze/Unsqueeze, shape arithmetic, constant subexpressions) the generic passes
keep ONNX Runtime's outputs: bit-identical for the restructuring passes, within the folding
tolerance once fold_constants runs; and running them twice changes nothing the second time."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from tests.graph_passes.helpers import apply, assert_same_outputs
from trtforge.graph_passes.cleanup import CleanupPass
from trtforge.graph_passes.fold_constants import FoldConstantsPass
from trtforge.graph_passes.fold_static_shapes import FoldStaticShapesPass
from trtforge.graph_passes.remove_identities import RemoveIdentitiesPass
from trtforge.graph_passes.toposort import ToposortPass

OPS = ("unary", "binary", "cast_pair", "slice", "unsqueeze_squeeze", "const_expr", "shape_reshape", "identity")


@st.composite
def graphs(draw) -> onnx.ModelProto:
    nodes, inits = [], []
    pool = [("x", (4, 6))]
    counter = iter(range(10_000))

    def fresh(prefix="t"):
        return f"{prefix}{next(counter)}"

    def const(values, dtype=np.float32):
        name = fresh("c")
        inits.append(onnx.numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    for _ in range(draw(st.integers(1, 10))):
        op = draw(st.sampled_from(OPS))
        src, shape = pool[draw(st.integers(0, len(pool) - 1))]
        out = fresh()
        if op == "unary":
            nodes.append(helper.make_node(draw(st.sampled_from(["Relu", "Neg", "Abs", "Sigmoid"])), [src], [out]))
        elif op == "identity":
            kind = draw(st.sampled_from(["Identity", "Dropout"]))
            nodes.append(helper.make_node(kind, [src], [out]))
        elif op == "binary":
            same = [n for n, s in pool if s == shape]
            other = draw(st.sampled_from(same))
            nodes.append(helper.make_node(draw(st.sampled_from(["Add", "Mul", "Sub"])), [src, other], [out]))
        elif op == "cast_pair":
            mid = draw(st.sampled_from([TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.FLOAT]))
            m = fresh()
            nodes += [
                helper.make_node("Cast", [src], [m], to=mid),
                helper.make_node("Cast", [m], [out], to=TensorProto.FLOAT),
            ]
        elif op == "slice":
            axis = draw(st.integers(0, len(shape) - 1))
            d = shape[axis]
            s = draw(st.integers(0, d - 1))
            e = draw(st.integers(s + 1, d))
            neg = draw(st.booleans())
            nodes.append(
                helper.make_node(
                    "Slice",
                    [
                        src,
                        const([s - d if neg else s], np.int64),
                        const([e if e < d or not neg else 2**31], np.int64),
                        const([axis], np.int64),
                    ],
                    [out],
                )
            )
            shape = tuple(e - s if i == axis else n for i, n in enumerate(shape))
        elif op == "unsqueeze_squeeze":
            axis = draw(st.integers(0, len(shape)))
            m = fresh()
            nodes += [
                helper.make_node("Unsqueeze", [src, const([axis], np.int64)], [m]),
                helper.make_node("Squeeze", [m, const([axis], np.int64)], [out]),
            ]
        elif op == "const_expr":
            a = const(draw(st.floats(-2, 2)))
            b = const(draw(st.floats(-2, 2)))
            k = fresh()
            nodes += [helper.make_node("Mul", [a, b], [k]), helper.make_node("Add", [src, k], [out])]
        else:  # flatten through shape arithmetic and back
            shp, flat = fresh(), fresh()
            nodes += [
                helper.make_node("Shape", [src], [shp]),
                helper.make_node("Reshape", [src, const([-1], np.int64)], [flat]),
                helper.make_node("Reshape", [flat, shp], [out]),
            ]
        pool.append((out, shape))
    produced = pool[1:]
    picks = draw(st.lists(st.sampled_from(produced), min_size=1, max_size=3, unique=True))
    if pool[-1] not in picks:
        picks.append(pool[-1])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in picks]
    graph = helper.make_graph(
        nodes, "random", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])], outputs, initializer=inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    onnx.checker.check_model(model)
    return model


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(graphs())
def test_restructuring_passes_keep_outputs_identical(model):
    passes = [FoldStaticShapesPass(), RemoveIdentitiesPass(), CleanupPass(), ToposortPass()]
    before, after, _, _ = apply(model, *passes)
    assert_same_outputs(before, after, exact=True)
    _, again, modified, _ = apply(after, FoldStaticShapesPass(), RemoveIdentitiesPass(), CleanupPass())
    assert not modified  # a second run finds nothing left to do


@SETTINGS
@given(graphs())
def test_default_pipeline_keeps_outputs_within_folding_tolerance(model):
    passes = [FoldConstantsPass(), FoldStaticShapesPass(), RemoveIdentitiesPass(), CleanupPass(), ToposortPass()]
    before, after, _, _ = apply(model, *passes)
    assert_same_outputs(before, after, exact=False)
