"""Widen attention masks saturated at the FP16 minimum once their island is FP32.

An FP16 export writes `finfo(float16).min` = -65504 (or an FP16 mask saturates there); the
realiser's Cast carries -65504 into the FP32 island unchanged. With scores beyond the FP16 range,
which is why the island exists, a masked score of s - 65504 can exceed the row's visible maximum
and win the softmax: a causal model went from 20-34 % of elements outside tolerance to 0 % when
only this constant became float32's minimum (what the FP32 reference model uses).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from trtforge.precision_rules.plan import FP16_MAX, producer
from trtforge.precision_rules.score_graph import const_values, mask_path_nodes

F32_MIN = np.finfo(np.float32).min


def _source(t):
    """The constant behind an island input: itself, or the constant a realiser Cast widens."""
    p = producer(t)
    if p is not None and p.op == "Cast" and p.inputs:
        return p.inputs[0]
    return t


def widen_saturated_masks(graph: gs.Graph, fp32_names: set[str]) -> int:
    """Give every FP32 node on a Softmax's mask path (mask_path_nodes) that reads a float constant
    holding -65504 (finite, at the FP16 minimum) a float32 copy with those entries at float32's
    minimum. Returns how many inputs. A -65504 elsewhere in an FP32 island (a clamp's bound, a
    fill value) is the export's own constant and stays as it is."""
    count = 0
    made: dict[str, gs.Constant] = {}  # one widened copy per mask tensor, shared by its readers
    masks = {id(n) for n in mask_path_nodes(graph)}
    for node in graph.nodes:
        if node.name not in fp32_names or node.op in ("Cast", "Constant") or id(node) not in masks:
            continue
        for j, t in enumerate(node.inputs):
            if t.dtype is None or np.dtype(t.dtype) != np.float32:
                continue
            values = const_values(_source(t))
            if values is None or not np.issubdtype(values.dtype, np.floating):
                continue
            saturated = np.isfinite(values) & (values <= -FP16_MAX)
            if not saturated.any():
                continue
            if t.name not in made:
                wide = np.where(saturated, F32_MIN, values.astype(np.float32)).astype(np.float32)
                made[t.name] = gs.Constant(f"{t.name}__fp32_mask", wide)
            node.inputs[j] = made[t.name]
            count += 1
    return count
