"""Fold constant subgraphs and static shape arithmetic (Shape -> Gather -> Concat ...) into
constants, so TensorRT parses no INT64 shape layers for static inputs. Large folded tensors are
not created (size_threshold): folding must not balloon weights.

Weights stay on disk except the ones a foldable node reads: graphsurgeon hands folded subgraphs
to ONNX Runtime as bytes, where external references cannot resolve (or would resolve against the
working directory), so exactly those tensors are loaded first, from the model's folder, and only
if under the size threshold (seen: diffusers' AutoencoderKL export folds an Expand of an external
initializer). Weights that were loaded but not folded go back to being lazy references, so the
output still points at the original weight file instead of copying them into passes.data.

Folded in FP32: every FP16 tensor the fold turns into a constant is evaluated again with the
subgraph that computes it widened to FP32 (trtforge.graphs.evaluate, node by node), which is what the
FP32 PyTorch reference computes, and stored back as FP16 when its values fit (finite, |v| <= 65504);
a value that does not fit stays FP32 and the legaliser's rules reconcile its readers (they compute
wide, as torch did). Seen: a Swin-v2 continuous position bias (a small MLP over a constant
coordinate table, then 16 * sigmoid) folded in FP16 moved the output by 0.018 and failed the
meaning check; folded in FP32 it is within FP16 rounding of the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues

from trtforge.graph_passes.base import GraphPass, PassContext, signature

FP16_MAX = 65504.0
IR_VERSION = 10  # what the pinned ONNX Runtime reads (graphsurgeon may write a newer one)
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}


def _static(t) -> bool:
    return t.shape is not None and all(isinstance(d, int) for d in t.shape)


def constant_derivable(graph: gs.Graph) -> set[str]:
    """Tensors whose values follow from constants and static shapes alone."""
    known = {name for name, t in graph.tensors().items() if isinstance(t, gs.Constant)}
    for node in graph.nodes:  # ONNX keeps nodes in topological order
        if node.op in NONDETERMINISTIC or node.op in ("If", "Loop", "Scan"):
            continue
        if node.op == "Shape" and node.inputs and _static(node.inputs[0]):
            known.update(o.name for o in node.outputs)
        elif all(t.is_empty() or t.name in known for t in node.inputs):
            known.update(o.name for o in node.outputs)
    return known


def load_folded_weights(graph: gs.Graph, limit: int) -> dict:
    """Load the lazy constants a foldable node reads (each at most `limit` bytes);
    name -> (lazy values, loaded array)."""
    known = constant_derivable(graph)
    loaded = {}
    for node in graph.nodes:
        if node.op == "Shape" or not all(t.is_empty() or t.name in known for t in node.inputs):
            continue
        for t in node.inputs:
            if isinstance(t, gs.Constant) and isinstance(t._values, LazyValues) and t._values.nbytes <= limit:
                lazy = t._values
                t.values = lazy.load()  # this tensor alone, from the model's folder
                loaded[t.name] = (lazy, t._values)
    return loaded


class FoldConstantsPass(GraphPass):
    name = "fold_constants"
    exact = False  # ONNX Runtime may evaluate folded arithmetic in another order or precision

    def __init__(self, size_threshold_mib: float = 16.0):
        self.size_threshold_mib = size_threshold_mib
        # the folded tensors stored as FP16 by the last apply: the meaning check rounds them there
        # in the graph before too (the FP16 graph declares them FP16), so it judges the folding
        self._stored_fp16: set[str] = set()

    def stored_fp16(self) -> set[str]:
        return set(self._stored_fp16)

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        before = signature(graph)
        limit = int(self.size_threshold_mib * (1 << 20))
        loaded = load_folded_weights(graph, limit)
        wide = fp32_values(graph, ctx.base_dir, limit)
        graph.fold_constants(fold_shapes=True, partitioning="basic", error_ok=True, size_threshold=limit)
        graph.cleanup(remove_unused_graph_inputs=False)
        unfit, self._stored_fp16 = store_wide(graph, wide)
        for t in graph.tensors().values():  # weights loaded but not folded: references again
            if isinstance(t, gs.Constant) and t.name in loaded and t._values is loaded[t.name][1]:
                t._values = loaded[t.name][0]
        if unfit:  # FP32 constants where FP16 was declared: their readers compute wide
            from trtforge.graph_passes.legalize_dtypes import LegalizeDtypesPass

            LegalizeDtypesPass().apply(graph, ctx)
        return signature(graph) != before


def _frontier(graph: gs.Graph, known: set[str], limit: int) -> list:
    """The FP16 tensors a fold turns into constants: computed from constants alone, read by a
    node that is not (or a graph output), and at most `limit` bytes."""
    outputs = {t.name for t in graph.outputs}
    out = []
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant) or t.name not in known or t.dtype is None:
            continue
        if np.dtype(t.dtype) != np.float16 or not _static(t) or 2 * int(np.prod(t.shape)) > limit:
            continue
        readers_outside = any(not all(i.is_empty() or i.name in known for i in c.inputs) for c in t.outputs)
        if readers_outside or t.name in outputs:
            out.append(t)
    return out


def fp32_values(graph: gs.Graph, base_dir: Path | None, limit: int) -> dict[str, np.ndarray]:
    """name -> FP32 value of each FP16 tensor the fold will turn into a constant, from its
    subgraph widened to FP32 (a Shape of a static input is its shape). {} when there is none or
    ONNX Runtime cannot run the subgraph (the fold then keeps graphsurgeon's own values)."""
    from trtforge.graph_passes.meaning import run_model, snapshot

    known = constant_derivable(graph)
    targets = _frontier(graph, known, limit)
    if not targets:
        return {}
    sub = graph.copy()
    tensors = sub.tensors()
    for node in sub.nodes:
        # (a Shape of a dynamic tensor feeds nothing folded: cleanup drops it below)
        if (
            node.op == "Shape"
            and node.inputs
            and _static(node.inputs[0])
            and not isinstance(node.inputs[0], gs.Constant)
        ):
            shape = np.array(node.inputs[0].shape, dtype=np.int64)
            start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
            node.outputs[0].to_constant(shape[start:end])
            node.outputs.clear()
    sub.inputs = []
    sub.outputs = [tensors[t.name] for t in targets]
    sub.cleanup(remove_unused_graph_inputs=True)
    try:
        model = snapshot(sub)  # the subgraph alone: weights stay references into their files
        model.ir_version = min(model.ir_version, IR_VERSION)
        got = run_model(model, base_dir or Path("."), {})
    except Exception:  # noqa: BLE001 - what ORT cannot run here, graphsurgeon's fold may still fold
        return {}
    return {name: np.asarray(v, dtype=np.float32) for name, v in got.items()}


def store_wide(graph: gs.Graph, wide: dict[str, np.ndarray]) -> tuple[int, set[str]]:
    """Give each FP16 constant the fold made its FP32-computed value: FP16 where it fits, else
    FP32. Returns how many stayed FP32, and the names stored as FP16."""
    unfit, stored = 0, set()
    for t in graph.tensors().values():
        v = wide.get(t.name)
        if v is None or not isinstance(t, gs.Constant) or t.values.dtype != np.float16 or v.shape != t.values.shape:
            continue
        if np.isfinite(v).all() and float(np.abs(v).max(initial=0.0)) <= FP16_MAX:
            t.values = v.astype(np.float16)
            stored.add(t.name)
        else:
            t.values = v
            unfit += 1
    return unfit, stored
