"""Make a mixed-dtype graph well typed with Casts.

Mixed-precision exports can feed one op float inputs of different dtypes: diffusers' SDXL UNet,
exported in FP16 by torch's dynamo exporter, concatenates the FP16 text embeds with an FP32
time-id embedding in one Concat (torch promotes, ONNX does not), so onnx.checker's full check and
the TensorRT parser refuse the graph. Which inputs must agree comes from the op's ONNX schema: the
inputs whose formal type is one type variable (Concat's inputs, Add's A and B, Where's X and Y but
not its condition, MatMul, Gemm, Equal/Less, ...; Pow's exponent has its own and may differ).

A mixed op computes in its widest input dtype (torch's type promotion). Cases, per op in
topological order, so a change flows downstream to a fixed point in one sweep:
- the op's result is declared in the narrow dtype and its wider inputs are all constants whose
  values fit it (finite, |v| <= its max, no nonzero value below its smallest normal): they are
  stored narrow (a new initializer; other readers keep the original). This rounds the constant,
  so the pass is then not `exact` (the meaning check holds it to the folding tolerance). A
  comparison, whose bool result says nothing, is widened instead: rounding its threshold could
  flip it;
- otherwise (a wider input is computed, or a constant does not fit) the narrow inputs get a Cast
  up (one per tensor and dtype, shared) and the op computes wide, as torch did;
- a wide result declared narrower (by an exporter that declared it so) is Cast back to its
  declared dtype under its name when its values are known to fit (a static bound: Sin/Cos/Tanh/
  Sigmoid/Softmax are within 1, data movement keeps its input's bound, any FP16 tensor is within
  65504), and always at a graph output (graph outputs keep their dtypes); otherwise it stays wide
  and its readers are retyped in turn, widened where that mixes their inputs;
- inputs that a float Cast cannot reconcile (an integer or bool mixed with a float, two integer
  dtypes, a dtype the op does not accept) are a PassError naming the node and its inputs' dtypes.
Widened to FP32, as the meaning check runs graphs, every case but the first computes exactly what
the mixed graph computed.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from numpy.typing import DTypeLike

from trtforge.errors import PassError, invariant
from trtforge.graph_passes.base import GraphPass, PassContext
from trtforge.graph_passes.fold_static_shapes import const_values
from trtforge.graph_passes.remove_identities import dtype_name as _dtype_name
from trtforge.graphs.cycles import check_acyclic

FLOAT_RANK = {"float16": 1, "bfloat16": 1, "float32": 2, "float64": 3}
FLOAT_MAX = {"float16": 65504.0, "bfloat16": 3.3895e38, "float32": 3.4028e38, "float64": np.inf}
# the smallest normal value: below it a constant loses significant bits (1e-5, a LayerNorm
# epsilon, keeps 8 of FP16's 11) or flushes to zero
FLOAT_TINY = {"float16": 2.0**-14, "bfloat16": 1.18e-38, "float32": 1.18e-38, "float64": 2.2e-308}
ONNX_NAME = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float", "float64": "double"}
# ops whose output magnitude is at most 1, and ops whose output values come from their data inputs
UNIT = {"Sin", "Cos", "Tanh", "Sigmoid", "Softmax", "Erf", "HardSigmoid", "Softsign"}
MOVE = {
    "Identity",
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Expand",
    "Slice",
    "Tile",
    "Split",
    "Concat",
    "Relu",
    "Neg",
    "Abs",
    "MaxPool",
    "Max",
    "Min",
    "Cast",
    "Gather",
    "Where",
    "GatherElements",
    "DepthToSpace",
    "SpaceToDepth",
}
DATA_INPUTS = {
    "Reshape": 1,
    "Expand": 1,
    "Slice": 1,
    "Tile": 1,
    "Split": 1,
    "Squeeze": 1,
    "Unsqueeze": 1,
    "Gather": 1,
    "GatherElements": 1,
}  # how many inputs carry values
MAX_DEPTH = 64  # a bound not found within this many producers is unknown


@cache
def dtype_name(dtype: DTypeLike | int | None) -> str | None:
    """'float16', 'float32', ... (numpy's dtype.name costs microseconds, and a UNet has 10k tensors)."""
    return _dtype_name(dtype)


@cache
def _schema(op: str, domain: str, version: int):
    try:
        return onnx.defs.get_schema(op, version, domain)
    except onnx.defs.SchemaError:
        return None


def tied_inputs(node: gs.Node, opsets: dict) -> tuple[dict, list] | None:
    """({type variable: [input indices]}, [type variable or None per output]) from the op's schema;
    None for an op without one (a custom domain) or with a subgraph."""
    domain = "" if node.domain in (None, "ai.onnx") else node.domain
    schema = _schema(node.op, domain, opsets.get(domain, 0)) if domain in opsets else None
    if schema is None or any(isinstance(v, gs.Graph) for v in node.attrs.values()):
        return None
    variables = {c.type_param_str for c in schema.type_constraints}
    formals = list(schema.inputs)
    groups: dict[str, list[int]] = {}
    variadic = onnx.defs.OpSchema.FormalParameterOption.Variadic
    for i, t in enumerate(node.inputs):
        if i < len(formals):
            formal = formals[i]
        elif formals and formals[-1].option == variadic:
            formal = formals[-1]
        else:
            continue
        if formal.option == variadic and not formal.is_homogeneous:
            continue
        if formal.type_str in variables and t.name:  # an omitted optional input has no name
            groups.setdefault(formal.type_str, []).append(i)
    outs = [
        schema.outputs[min(j, len(schema.outputs) - 1)].type_str if schema.outputs else None
        for j in range(len(node.outputs))
    ]
    return groups, [v if v in groups else None for v in outs]


def allowed(node: gs.Node, opsets: dict, var: str) -> set[str]:
    domain = "" if node.domain in (None, "ai.onnx") else node.domain
    schema = _schema(node.op, domain, opsets.get(domain, 0))
    return {s for c in schema.type_constraints if c.type_param_str == var for s in c.allowed_type_strs}


def opsets_of(graph: gs.Graph) -> dict:
    out = {"": graph.opset}
    for imp in graph.import_domains or []:
        out["" if imp.domain in ("", "ai.onnx") else imp.domain] = imp.version
    return out


def in_order(graph: gs.Graph) -> list[gs.Node]:
    """The nodes in a topological order, without reordering the graph (the pass reports honestly
    that it changed nothing when nothing is mixed). A cycle is an error naming a node on it (this
    walk once grew without end on one)."""
    check_acyclic(graph)
    producer = {id(t): n for n in graph.nodes for t in n.outputs}
    done: set[int] = set()
    order = []
    for root in graph.nodes:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            stack.append((node, True))
            stack += [
                (producer[id(t)], False) for t in node.inputs if id(t) in producer and id(producer[id(t)]) not in done
            ]
    return order


def mixed_nodes(graph: gs.Graph) -> list[tuple[gs.Node, list[tuple[str, str | None]]]]:
    """Every node whose tied inputs disagree in dtype, with (input name, dtype or None where
    unknown) of each."""
    opsets, found = opsets_of(graph), []
    for node in graph.nodes:
        tied = tied_inputs(node, opsets)
        if tied is None:
            continue
        for idx in tied[0].values():
            dts = {dtype_name(node.inputs[i].dtype) for i in idx} - {None}
            if len(dts) > 1:
                found.append((node, [(node.inputs[i].name, dtype_name(node.inputs[i].dtype)) for i in idx]))
    return found


def label(node: gs.Node) -> str:
    return f"{node.op} '{node.name}'" if node.name else f"{node.op} (output '{node.outputs[0].name}')"


def describe(node: gs.Node, members: list[tuple[str, str | None]]) -> str:
    return f"{label(node)} mixes input dtypes " + ", ".join(f"'{name}' {dt}" for name, dt in members)


class LegalizeDtypesPass(GraphPass):
    name = "legalize_dtypes"

    def __init__(self):
        self._inexact = False
        self._changes: list[str] = []

    @property
    def exact(self) -> bool:  # type: ignore[override]  # a class constant in the base; decided per run here
        """Casts change nothing in the FP32-widened meaning check; a constant stored narrow rounds."""
        return not self._inexact

    def changes(self) -> list[str]:
        return list(self._changes)

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        self._inexact, self._changes = False, []
        self._made: dict[tuple[int, str], gs.Tensor] = {}  # (tensor, dtype) -> its Cast or narrowed copy
        self._names = set(graph.tensors())
        self._touched: set[int] = set()  # tensors this pass made or retyped: their readers may change
        self._bounds: dict[int, float] = {}
        opsets = opsets_of(graph)
        for node in in_order(graph):
            tied = tied_inputs(node, opsets)
            if tied is None:
                continue
            groups, out_vars = tied
            resolved = {}
            for var, idx in groups.items():
                declared = {dtype_name(o.dtype) for o, v in zip(node.outputs, out_vars) if v == var}
                resolved[var] = self._resolve(graph, node, var, idx, opsets, declared)
            touched = any(id(t) in self._touched for t in node.inputs)
            for j, var in enumerate(out_vars):
                want = resolved.get(var)
                if touched and want is not None and want != dtype_name(node.outputs[j].dtype):
                    self._retype_output(graph, node, j, want)
        if self._changes:
            graph.toposort()  # the Casts were appended
        return bool(self._changes)

    def ensures(self, graph: gs.Graph) -> None:
        left = mixed_nodes(graph)
        invariant(not left, "still mixed: " + "; ".join(describe(n, m) for n, m in left[:3]))

    # ------------------------------------------------------------------------------ one op

    def _resolve(
        self, graph: gs.Graph, node: gs.Node, var: str, idx: list[int], opsets: dict, declared: set
    ) -> str | None:
        """The dtype the inputs `idx` (one type variable) agree on after the pass, Casts inserted;
        `declared`: the declared dtypes of the outputs this type variable types."""
        members: list[tuple[int, gs.Tensor, str]] = []
        for i in idx:
            dt = dtype_name(node.inputs[i].dtype)
            if dt is None:
                return None  # an unknown dtype: nothing to reconcile it with
            members.append((i, node.inputs[i], dt))
        dts = {dt for _, _, dt in members}
        if len(dts) == 1:
            return dts.pop()
        where = describe(node, [(t.name, dt) for _, t, dt in members])
        if not dts <= set(FLOAT_RANK):
            raise PassError(
                f"cannot make the graph well typed: {where}; only float dtypes are reconciled by a Cast",
                where=f"pass {self.name}",
                hint="cast the tensor in the model's forward so both inputs have one dtype",
            )
        low = min(FLOAT_RANK[d] for d in dts)
        narrow = {d for d in dts if FLOAT_RANK[d] == low}
        wide = [(i, t, dt) for i, t, dt in members if FLOAT_RANK[dt] > low]
        if len(narrow) == 1 and declared == narrow:
            target = narrow.pop()
            if self._narrow_constants(node, wide, target):
                return target
        top = max(FLOAT_RANK[d] for d in dts)
        target = "float64" if top == 3 else "float32"  # float16 with bfloat16: neither holds the other
        if f"tensor({ONNX_NAME[target]})" not in allowed(node, opsets, var):
            raise PassError(
                f"cannot make the graph well typed: {where}; {node.op} does not accept {target}",
                where=f"pass {self.name}",
                hint="cast the inputs in the model's forward",
            )
        why = self._why_wide(wide)
        for i, t, dt in members:
            if dt != target:
                node.inputs[i] = self._cast(graph, t, target)
                self._changes.append(f"{label(node)}: input '{t.name}' {dt} -> {target} by a Cast ({why})")
        return target

    def _narrow_constants(self, node: gs.Node, wide: list, target: str) -> bool:
        """Store every wider input narrow when all are constants that fit `target`."""
        if target == "bfloat16":  # numpy has no bfloat16 to store it in
            return False
        values = [v for _, t, _ in wide if (v := const_values(t)) is not None]
        if len(values) < len(wide) or not all(_fits(v, target) for v in values):
            return False
        for (i, t, dt), v in zip(wide, values):
            key = (id(t), target)
            if key not in self._made:
                self._made[key] = gs.Constant(self._fresh(f"{t.name}__{target}"), np.asarray(v).astype(target))
            node.inputs[i] = self._made[key]
            self._touched.add(id(self._made[key]))
            peak = float(np.max(np.abs(v))) if v.size else 0.0
            self._changes.append(
                f"{label(node)}: constant '{t.name}' {dt} -> {target} (every value fits {target}, max |v| {peak:.4g})"
            )
        self._inexact = True
        return True

    def _why_wide(self, wide: list) -> str:
        peaks = []
        for _, t, dt in wide:
            v = const_values(t)
            if v is None:
                return f"'{t.name}' is {dt}, computed: kept {dt}"
            peaks.append(f"'{t.name}' max |v| {float(np.max(np.abs(v))):.4g}")
        return f"constant not stored narrow: {', '.join(peaks)}"

    def _cast(self, graph: gs.Graph, t: gs.Tensor, target: str) -> gs.Variable:
        key = (id(t), target)
        if key not in self._made:
            out = gs.Variable(self._fresh(f"{t.name}__{target}"), dtype=np.dtype(target), shape=t.shape)
            graph.nodes.append(
                gs.Node("Cast", name=f"{out.name}__cast", attrs={"to": _onnx_type(target)}, inputs=[t], outputs=[out])
            )
            self._made[key] = out
            self._touched.add(id(out))
        return self._made[key]

    def _fresh(self, name: str) -> str:
        """A tensor name not yet in the graph (ONNX names each tensor once)."""
        candidate, n = name, 1
        while candidate in self._names:
            n += 1
            candidate = f"{name}{n}"
        self._names.add(candidate)
        return candidate

    def _retype_output(self, graph: gs.Graph, node: gs.Node, j: int, want: str) -> None:
        out = node.outputs[j]
        declared = dtype_name(out.dtype)
        what = f"{label(node)}: output '{out.name}'"
        self._touched.add(id(out))
        if declared is None or declared not in FLOAT_RANK or want not in FLOAT_RANK:
            out.dtype = _gs_dtype(want)
            self._changes.append(f"{what} {declared or 'of unknown dtype'} -> {want}")
            return
        if out in graph.outputs:
            why = "a graph output keeps its dtype"
        elif FLOAT_RANK[want] > FLOAT_RANK[declared] and self._bound(node, 0) <= FLOAT_MAX[declared]:
            why = f"values known within {declared}'s range"
        else:
            out.dtype = _gs_dtype(want)  # readers follow: they are legalised when the sweep reaches them
            self._changes.append(
                f"{what} {declared} -> {want} (values not known to fit {declared}; its readers follow)"
            )
            return
        wide = gs.Variable(self._fresh(f"{out.name}__{want}"), dtype=_gs_dtype(want), shape=out.shape)
        node.outputs[j] = wide
        graph.nodes.append(
            gs.Node("Cast", name=f"{wide.name}__cast", attrs={"to": _onnx_type(declared)}, inputs=[wide], outputs=[out])
        )
        self._changes.append(f"{what} computed in {want}, Cast back to {declared} ({why})")

    # ------------------------------------------------------------------------------ value bounds

    def _bound(self, node: gs.Node, depth: int) -> float:
        """A static upper bound of |output| of `node`, inf where unknown."""
        if id(node) in self._bounds:
            return self._bounds[id(node)]
        bound = np.inf
        if depth < MAX_DEPTH:
            if node.op in UNIT:
                bound = 1.0
            elif node.op in MOVE:
                data = node.inputs[: DATA_INPUTS.get(node.op, len(node.inputs))]
                if node.op == "Where":
                    data = node.inputs[1:]
                bound = max((self._tensor_bound(t, depth + 1) for t in data), default=np.inf)
            elif node.op in ("Mul", "Add", "Sub") and len(node.inputs) == 2:
                a, b = (self._tensor_bound(t, depth + 1) for t in node.inputs)
                bound = a * b if node.op == "Mul" else a + b
        self._bounds[id(node)] = bound
        return bound

    def _tensor_bound(self, t: gs.Tensor, depth: int) -> float:
        values = const_values(t) if isinstance(t, gs.Constant) or (t.inputs and t.inputs[0].op == "Constant") else None
        if values is not None:
            v = np.abs(np.asarray(values, dtype=np.float64))
            return float(v.max()) if v.size else 0.0
        own = FLOAT_MAX.get(dtype_name(t.dtype) or "", np.inf)  # any FP16 value is within 65504
        if not t.inputs:
            return own
        return min(own, self._bound(t.inputs[0], depth))


def _gs_dtype(dtype: str):
    return onnx.TensorProto.BFLOAT16 if dtype == "bfloat16" else np.dtype(dtype)


def _onnx_type(dtype: str) -> int:
    return onnx.TensorProto.BFLOAT16 if dtype == "bfloat16" else onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _fits(values: np.ndarray, target: str) -> bool:
    v = np.abs(np.asarray(values, dtype=np.float64))
    if not np.all(np.isfinite(v)) or (v.size and v.max() > FLOAT_MAX[target]):
        return False
    nonzero = v[v > 0]
    return not nonzero.size or nonzero.min() >= FLOAT_TINY[target]
