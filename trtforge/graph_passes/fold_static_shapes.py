"""Rewrite the ops that TensorRT's ONNX parser expands into INT64 shape arithmetic into static
forms, for inputs whose shapes are known:

- Slice with constant starts/ends/axes, steps 1 -> Split with constant sizes (slices of one tensor
  along one axis that tile it, like dynamo's `unbind` of a fused QKV, share one Split);
- Squeeze / Unsqueeze with constant axes -> Reshape to a constant shape;
- Shape (and Size) of a static tensor -> a constant, which fold_constants then propagates.

Why: the parser turns every Slice into ~25 shape layers (clamping starts/ends at build time)
even when all of them are constants. Measured on the example 4-block ViT: 521 layers, 292 of them
INT64 shape-only, all from the 12 Slices of the QKV unbind. A Split becomes static SLICE layers and
a Reshape to a constant shape a SHUFFLE, with no shape layers. Every rewrite is bit-exact.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx_graphsurgeon as gs

from trtforge.errors import InternalError, invariant
from trtforge.graph_passes.base import GraphPass, PassContext, bypass


def static_shape(t: gs.Tensor) -> list[int] | None:
    shape = t.shape
    if shape is None or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
        return None
    return [int(d) for d in shape]


def known_shape(t: gs.Tensor) -> list[int]:
    """The static shape of a tensor already found static (a bug otherwise)."""
    shape = static_shape(t)
    if shape is None:
        raise InternalError(f"tensor '{t.name}' was taken for static but has shape {t.shape}")
    return shape


def const_values(t: gs.Tensor | None) -> np.ndarray | None:
    """The values of a constant: an initializer or the output of a Constant node."""
    if isinstance(t, gs.Constant):
        return np.asarray(t.values)
    if t is not None and t.inputs and t.inputs[0].op == "Constant":
        value = t.inputs[0].attrs.get("value")
        if isinstance(value, gs.Constant):
            return np.asarray(value.values)
    return None


def const_ints(t: gs.Tensor | None) -> list[int] | None:
    values = const_values(t)
    return None if values is None else [int(v) for v in values.reshape(-1)]


def slice_ranges(node: gs.Node) -> dict[int, tuple[int, int]] | None:
    """axis -> clamped (start, end) of a constant, step-1 Slice on a static input; None otherwise."""
    shape = static_shape(node.inputs[0])
    ins = list(node.inputs) + [None] * (5 - len(node.inputs))
    starts, ends = const_ints(ins[1]), const_ints(ins[2])
    axes = const_ints(ins[3]) if ins[3] is not None and ins[3].name else list(range(len(starts or [])))
    steps = const_ints(ins[4]) if ins[4] is not None and ins[4].name else [1] * len(starts or [])
    if shape is None or starts is None or ends is None or axes is None or steps is None:
        return None
    if any(s != 1 for s in steps):
        return None
    out = {}
    for s, e, a in zip(starts, ends, axes):
        a = a + len(shape) if a < 0 else a
        d = shape[a]
        s = min(max(s + d if s < 0 else s, 0), d)
        e = min(max(e + d if e < 0 else e, 0), d)
        out[a] = (s, max(e, s))
    return out


def _split(graph: gs.Graph, data: gs.Tensor, axis: int, bounds: list[int], name: str) -> list[gs.Variable]:
    """Split `data` along `axis` at `bounds` (0 = b0 < b1 < ... = dim); one output per piece."""
    name = _unique(graph, name)
    shape = known_shape(data)
    sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    outs = []
    for i, n in enumerate(sizes):
        piece = list(shape)
        piece[axis] = n
        outs.append(gs.Variable(f"{name}_piece{i}", dtype=data.dtype, shape=piece))
    split = gs.Constant(f"{name}_sizes", np.array(sizes, dtype=np.int64))
    graph.nodes.append(gs.Node("Split", name=name, attrs={"axis": axis}, inputs=[data, split], outputs=outs))
    return outs


def _unique(graph: gs.Graph, name: str) -> str:
    """Exported models name their nodes; ONNX text may not. Tensor names must stay unique."""
    taken = graph.__dict__.setdefault("_trtforge_names", {n.name for n in graph.nodes} | set(graph.tensors()))
    base, k = name or "trtforge", 0
    while name in taken or f"{name}_sizes" in taken:
        k += 1
        name = f"{base}_{k}"
    taken.update({name, f"{name}_sizes"})
    return name


def _alias(graph: gs.Graph, node: gs.Node, source: gs.Tensor) -> None:
    """`node` computes `source` again: its consumers read `source`; where its output is a graph
    output it becomes Identity(source) (remove_identities renames what it safely can)."""
    if node.outputs[0] in graph.outputs or not bypass(graph, node, source, node.outputs[0]):
        node.op, node.attrs = "Identity", {}
        node.inputs.clear()
        node.inputs.append(source)


def _take_over(node: gs.Node, piece: gs.Variable) -> None:
    """The Slice's output becomes the Split piece (same name, so consumers and graph outputs hold)."""
    out = node.outputs[0]
    out.shape, out.dtype = piece.shape, out.dtype or piece.dtype
    producer = piece.inputs[0]
    producer.outputs[producer.outputs.index(piece)] = out
    node.outputs.clear()
    node.inputs.clear()


def _rewrite_slices(graph: gs.Graph) -> bool:
    groups: dict[tuple, list] = defaultdict(list)
    changed = False
    for node in graph.nodes:
        if node.op != "Slice" or not node.outputs:
            continue
        ranges = slice_ranges(node)
        if ranges is None:
            continue
        shape = known_shape(node.inputs[0])
        real = {a: r for a, r in ranges.items() if r != (0, shape[a])}
        if not real:  # takes everything
            _alias(graph, node, node.inputs[0])
            changed = True
        elif len(real) == 1 and all(r[1] > r[0] for r in real.values()):
            ((axis, rng),) = real.items()
            groups[(id(node.inputs[0]), axis)].append((node, rng))
        elif all(r[1] > r[0] for r in real.values()):
            data = node.inputs[0]  # several axes: one Split per axis, chained
            for k, (axis, (s, e)) in enumerate(sorted(real.items())):
                dim = known_shape(data)[axis]
                bounds = sorted({0, s, e, dim})
                data = _split(graph, data, axis, bounds, f"{node.name}_split{k}")[bounds.index(s)]
            _take_over(node, data)
            changed = True
    for (_, axis), members in groups.items():
        data = members[0][0].inputs[0]
        dim = known_shape(data)[axis]
        bounds = sorted({0, dim, *(b for _, r in members for b in r)})
        pieces = None
        taken: dict = {}
        for node, (s, e) in members:
            i = bounds.index(s)
            if bounds[i + 1] == e and i in taken:  # the same slice twice: read the first one
                _alias(graph, node, taken[i])
            elif bounds[i + 1] == e:  # one piece of the shared split
                if pieces is None:
                    pieces = _split(graph, data, axis, bounds, f"{members[0][0].name}_split")
                taken[i] = node.outputs[0]
                _take_over(node, pieces[i])
            else:  # overlaps another slice's cut: a split of its own
                own = sorted({0, s, e, dim})
                _take_over(node, _split(graph, data, axis, own, f"{node.name}_split")[own.index(s)])
        changed = True
    return changed


def _squeeze_shape(node: gs.Node) -> list[int] | None:
    shape = static_shape(node.inputs[0])
    if shape is None:
        return None
    axes_t = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1].name else None
    axes = const_ints(axes_t) if axes_t is not None else node.attrs.get("axes")
    if axes_t is not None and axes is None:
        return None
    if node.op == "Squeeze":
        if axes is None:
            return [d for d in shape if d != 1]
        axes = {a + len(shape) if a < 0 else a for a in axes}
        return [d for i, d in enumerate(shape) if i not in axes]
    if axes is None:  # Unsqueeze names its axes (an attribute, or an input from opset 13)
        return None
    rank = len(shape) + len(axes)
    axes = sorted(a + rank if a < 0 else a for a in axes)
    out, it = [], iter(shape)
    for i in range(rank):
        out.append(1 if i in axes else next(it))
    return out


def _rewrite_squeezes(graph: gs.Graph) -> bool:
    changed = False
    for node in graph.nodes:
        if node.op not in ("Squeeze", "Unsqueeze") or not node.outputs:
            continue
        shape = _squeeze_shape(node)
        if shape is None:
            continue
        target = gs.Constant(_unique(graph, f"{node.name}_shape"), np.array(shape, dtype=np.int64))
        node.op, node.attrs = "Reshape", {}
        data = node.inputs[0]
        node.inputs.clear()
        node.inputs.extend([data, target])
        node.outputs[0].shape = shape
        changed = True
    return changed


def _rewrite_shapes(graph: gs.Graph) -> bool:
    changed = False
    for node in graph.nodes:
        if node.op not in ("Shape", "Size") or not node.outputs:
            continue
        shape = static_shape(node.inputs[0])
        if shape is None or node.outputs[0] in graph.outputs:
            continue
        if node.op == "Size":
            value = np.array(int(np.prod(shape)), dtype=np.int64)
        else:
            value = np.array(shape[node.attrs.get("start", 0) : node.attrs.get("end", len(shape))], dtype=np.int64)
        out = node.outputs[0]
        out.to_constant(value)
        node.outputs.clear()
        node.inputs.clear()
        changed = True
    return changed


class FoldStaticShapesPass(GraphPass):
    name = "fold_static_shapes"

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        changed = _rewrite_shapes(graph)
        changed |= _rewrite_slices(graph)
        changed |= _rewrite_squeezes(graph)
        graph.__dict__.pop("_trtforge_names", None)
        if changed:
            graph.cleanup(remove_unused_graph_inputs=False)
        return changed

    def ensures(self, graph: gs.Graph) -> None:
        for node in graph.nodes:
            if node.op == "Slice" and node.outputs:
                r = slice_ranges(node)
                invariant(r is None or any(e <= s for s, e in r.values()), f"static Slice '{node.name}' survived")
