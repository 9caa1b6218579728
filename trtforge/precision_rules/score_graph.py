"""The structure of one attention block's scores, found by walking back from its Softmax.

One general rule instead of a case per architecture: from the Softmax, walk back through the ops
that carry scores unchanged in kind (scale, additive bias or mask, Where-masking, reshapes of the
window partition or of a 3-D batched MatMul, Casts of a float32 softmax, gathers of relative
positions) to the MatMuls that produce them. A MatMul is a score MatMul when
- both operands are activations (Q.K^T: plain, windowed, GQA with repeated K/V, rotary, cross), or
- its left operand is a constant and its right an activation (a learned query: attention pooling), or
- its right operand is a constant and the same Softmax also has a score MatMul of the first kind
  (DeBERTa's relative-position scores: Q times a folded position-key table, gathered and added).
A MatMul whose right operand is a constant and that feeds the Softmax alone is a projection
(a classifier Linear), reported as a near miss.

Masks: an additive or Where mask built in FP16 from `finfo(float16).min` holds -65504, which a Cast
to FP32 carries unchanged; once a masked score passes 65504 plus the row's visible maximum it wins
the softmax. So the walk also returns the small elementwise nodes between a mask constant holding
-65504 and the score chain: kept FP32 with the chain, their constant is widened by the realiser
(mask_widen) to float32's minimum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues

from trtforge.precision_rules.plan import FP16_MAX, producer

# ops a score passes through between its MatMul and the Softmax (first input only for the gathers,
# value inputs only for Where)
CARRY = {
    "Mul",
    "Div",
    "Add",
    "Sub",
    "Where",
    "Reshape",
    "Cast",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Expand",
    "Neg",
    "Identity",
    "Gather",
    "GatherElements",
    "Slice",
    "Flatten",
}
# ops a mask passes through on its way from its constant to the score chain (no Cast: a Cast to
# FP16 after the constant would saturate a widened value again)
MASK_CARRY = {
    "Where",
    "Add",
    "Sub",
    "Mul",
    "Expand",
    "Reshape",
    "Unsqueeze",
    "Squeeze",
    "Slice",
    "Concat",
    "Tile",
    "Transpose",
    "Identity",
    "Neg",
    "Min",
    "Max",
}
MAX_DEPTH = 12  # ops between a Softmax and its score MatMul (Swin: scale, bias, 2 reshapes, mask)
MASK_DEPTH = 6
CONST_DEPTH = 4  # ops between a folded constant and the MatMul (Transpose, Reshape, Cast)


@dataclass
class ScoreChain:
    softmax: gs.Node
    nodes: list = field(default_factory=list)  # score path nodes, the Softmax first
    matmuls: list = field(default_factory=list)  # (node, kind) of every score MatMul
    mask_nodes: list = field(default_factory=list)  # elementwise nodes of saturated masks
    why: str = ""


def _float(t) -> bool:
    try:
        return t.dtype is not None and np.issubdtype(np.dtype(t.dtype), np.floating)
    except TypeError:
        return False


def _peek(c: gs.Constant) -> np.ndarray:
    """A constant's values without caching them in the graph: a loaded external tensor would be
    exported inline-less (external data without a location)."""
    v = c._values
    return v.load() if isinstance(v, LazyValues) else v


def const_values(t) -> np.ndarray | None:
    """The values of a constant tensor (initializer or Constant node output), else None."""
    if isinstance(t, gs.Constant):
        return _peek(t)
    p = producer(t)
    if p is not None and p.op == "Constant" and "value" in p.attrs:
        v = p.attrs["value"]
        return _peek(v) if isinstance(v, gs.Constant) else np.asarray(v)
    return None


def const_derived(t, depth: int = CONST_DEPTH) -> bool:
    """A constant, or computed from constants only (a folded table that was transposed or cast)."""
    if isinstance(t, gs.Constant):
        return True
    p = producer(t)
    if p is None:
        return False
    if p.op == "Constant":
        return True
    return depth > 0 and bool(p.inputs) and all(const_derived(i, depth - 1) for i in p.inputs if i.name)


def _operands(node: gs.Node) -> list:
    if node.op == "Where":
        return node.inputs[1:3]
    if node.op in ("Gather", "GatherElements", "Reshape", "Expand", "Slice", "Squeeze", "Unsqueeze"):
        return node.inputs[:1]
    return node.inputs


def _matmul_kind(node: gs.Node) -> str:
    a, b = (const_derived(t) for t in node.inputs[:2])
    if a and b:
        return "constant"
    if a:
        return "learned query"
    if b:
        return "weight"
    k = producer(node.inputs[1])
    return "K^T by Transpose" if k is not None and k.op == "Transpose" else "K^T pre-transposed"


def _walk(softmax: gs.Node) -> tuple[dict, list, list]:
    """Backward search from the Softmax over CARRY ops: parent links, MatMuls reached, dead ends."""
    parent: dict[int, gs.Node] = {id(softmax): None}
    frontier, matmuls, ends = [(softmax, 0)], [], []
    while frontier:
        node, depth = frontier.pop(0)
        operands = node.inputs[:1] if node is softmax else _operands(node)
        for t in operands:
            p = producer(t)
            if p is None or not _float(t) or const_derived(t) or id(p) in parent:
                if p is None and not isinstance(t, gs.Constant) and node is softmax:
                    ends.append(f"its input is graph input '{t.name}', not a MatMul")
                continue
            parent[id(p)] = node
            if p.op in ("MatMul", "Einsum"):
                matmuls.append(p)
            elif p.op in CARRY and depth < MAX_DEPTH:
                frontier.append((p, depth + 1))
            else:
                ends.append(f"{p.op} '{p.name}'")
    return parent, matmuls, ends


def _path(parent: dict, node: gs.Node) -> list:
    out = []
    while node is not None:
        out.append(node)
        node = parent.get(id(node))
    return out


def find_chain(softmax: gs.Node) -> tuple[ScoreChain | None, str]:
    parent, matmuls, ends = _walk(softmax)
    kinds = [(m, _matmul_kind(m)) for m in matmuls]
    primary = [(m, k) for m, k in kinds if k not in ("weight", "constant")]
    if not primary:
        weighted = [m for m, k in kinds if k == "weight"]
        if weighted:
            return None, (
                f"MatMul '{weighted[0].name}' has a weight operand: a projection, not Q.K^T with a transposed operand"
            )
        if ends:
            return None, (
                f"its input comes from {ends[0]}, not a MatMul with a transposed operand "
                "(through scale, bias, mask or reshape)"
            )
        return None, f"no MatMul within {MAX_DEPTH} ops of the Softmax"
    score = primary + [(m, "relative position, folded table") for m, k in kinds if k == "weight"]
    seen, nodes = set(), []
    for m, _ in score:
        for n in reversed(_path(parent, m)):
            if id(n) not in seen:
                seen.add(id(n))
                nodes.append(n)
    chain = ScoreChain(softmax, nodes, score)
    chain.mask_nodes = saturated_masks(chain)
    first = primary[0]
    chain.why = f"score MatMul '{first[0].name}', {first[1]}"
    if len(score) > 1:
        chain.why += f", {len(score) - 1} more score MatMul(s)"
    if chain.mask_nodes or any(_saturated(t) for n in nodes if n.op != "MatMul" for t in n.inputs):
        chain.why += "; FP16-saturated mask widened"
    return chain, chain.why


def _saturated(t) -> bool:
    v = const_values(t)
    p = producer(t)
    if v is None and p is not None and p.op == "Cast" and p.inputs:  # a realiser's Cast into the island
        v = const_values(p.inputs[0])
    return v is not None and np.issubdtype(v.dtype, np.floating) and bool(np.any(np.isfinite(v) & (v <= -FP16_MAX)))


def _mask_path(t, depth: int) -> list | None:
    """Nodes from a mask operand back to the node that reads a -65504 constant (None if none)."""
    p = producer(t)
    if p is None or p.op not in MASK_CARRY or depth < 0:
        return None
    inputs = p.inputs[1:3] if p.op == "Where" else p.inputs
    if any(_saturated(i) for i in inputs):
        return [p]
    for i in inputs:
        if _float(i) and not isinstance(i, gs.Constant):
            rest = _mask_path(i, depth - 1)
            if rest is not None:
                return [p, *rest]
    return None


def saturated_masks(chain: ScoreChain) -> list:
    """Mask nodes to keep FP32 so that their -65504 can be widened: the chain nodes reading such a
    constant are in the chain already; elementwise mask builders off the chain are added."""
    on_chain = {id(n) for n in chain.nodes}
    extra: list = []
    for node in chain.nodes:
        if node.op not in ("Add", "Sub", "Where", "Mul", "Attention"):
            continue
        for t in node.inputs[1:3] if node.op == "Where" else node.inputs:
            p = producer(t)
            if p is None or id(p) in on_chain or not _float(t):
                continue
            path = _mask_path(t, MASK_DEPTH)
            for n in path or []:
                if id(n) not in on_chain:
                    on_chain.add(id(n))
                    extra.append(n)
    return extra


def score_chain(softmax: gs.Node) -> tuple[list | None, str]:
    """(Softmax first, primary score MatMul last) or why the Softmax has none (for the softmax rule)."""
    chain, why = find_chain(softmax)
    if chain is None:
        return None, why
    first = chain.matmuls[0][0]
    return [n for n in chain.nodes if n is not first] + [first], why


def mask_path_nodes(graph: gs.Graph) -> list:
    """The nodes on a Softmax's mask path: per Softmax with a score chain, the chain's elementwise
    nodes (where an additive or Where mask meets the scores) and the mask builders off the chain;
    and ONNX Attention nodes (their mask input). MatMuls and the Softmax itself are not listed."""
    out: list = []
    for node in graph.nodes:
        if node.op == "Attention":
            out.append(node)
        elif node.op == "Softmax":
            chain, _ = find_chain(node)
            if chain is not None:
                out += [n for n in chain.nodes if n.op not in ("MatMul", "Einsum", "Softmax")]
                out += chain.mask_nodes
    return out
