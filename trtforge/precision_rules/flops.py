"""Multiply-accumulate FLOPs of MatMul, Gemm and Conv from static shapes, and the share that stays FP16."""

from __future__ import annotations

import math
from typing import Any

import onnx_graphsurgeon as gs

HEAVY = ("MatMul", "Gemm", "Conv", "ConvTranspose", "Attention")


def _static(shape) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def node_flops(node: gs.Node) -> int | None:
    out: Any
    a: Any
    b: Any
    out = node.outputs[0].shape if node.outputs else None
    a = node.inputs[0].shape if node.inputs else None
    b = node.inputs[1].shape if len(node.inputs) > 1 else None
    if not (_static(out) and _static(a) and _static(b)):
        return None
    if node.op == "Attention":  # Q.K^T and P.V; 3-D (B, S, H*d) and 4-D (B, H, S, d) alike
        v: Any = node.inputs[2].shape if len(node.inputs) > 2 else None
        if not _static(v):
            return None
        return 2 * b[-2] * (math.prod(a) + math.prod(a[:-1]) * v[-1])
    if node.op == "MatMul":
        return 2 * math.prod(out) * a[-1]
    if node.op == "Gemm":
        k = a[0] if node.attrs.get("transA", 0) else a[-1]
        return 2 * math.prod(out) * k
    if node.op == "Conv":
        return 2 * math.prod(out) * math.prod(b[1:])
    if node.op == "ConvTranspose":
        return 2 * math.prod(a) * math.prod(b[1:])
    return None


def fp16_flop_share(graph: gs.Graph, fp32_names: set[str]) -> dict:
    total = fp32 = unknown = 0
    for node in graph.nodes:
        if node.op not in HEAVY:
            continue
        f = node_flops(node)
        if f is None:
            unknown += 1
            continue
        total += f
        if node.name in fp32_names:
            fp32 += f
    return {
        "total_flops": total,
        "fp32_flops": fp32,
        "unknown_nodes": unknown,
        "fp16_share": (total - fp32) / total if total else 1.0,
    }
