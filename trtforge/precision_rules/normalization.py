"""Keep normalisation statistics FP32: LayerNormalization / RMSNormalization ops and the decomposed
variance paths exporters emit.

Cases:
- the ops LayerNormalization, RMSNormalization (opset 23), SimplifiedLayerNormalization (ORT);
- decomposed LayerNorm: ReduceMean -> Sub -> Pow(2) | Mul(d, d) -> ReduceMean -> Add(eps) -> Sqrt
  -> Div | Reciprocal -> Mul; the mean, the centring and the whole variance path stay FP32;
- decomposed RMSNorm: Pow(x, 2) -> ReduceMean -> Add(eps) -> Sqrt/Rsqrt -> Div | Reciprocal/Mul.
Why: a sum of squares over a wide hidden dimension overflows FP16 long before the activations do
(|x| ~ 300 over 768 channels is already 6.9e7). Near misses: a squared-mean not followed by
Add(eps) -> Sqrt, reported with what came instead.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from trtforge.precision_rules.plan import RuleResult, producer

FUSED = ("LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization")
INVERSE = ("Div", "Reciprocal", "Mul")


def _const_value(t):
    if isinstance(t, gs.Constant):
        return t.values
    p = producer(t)
    if p is not None and p.op == "Constant":
        return p.attrs.get("value").values if hasattr(p.attrs.get("value"), "values") else None
    return None


def _is_square(node: gs.Node) -> bool:
    if node.op == "Pow":
        v = _const_value(node.inputs[1])
        return v is not None and np.size(v) == 1 and float(np.asarray(v).ravel()[0]) == 2.0
    return node.op == "Mul" and node.inputs[0] is node.inputs[1]


def _only_consumer(t, ops) -> gs.Node | None:
    users = list(t.outputs)
    return users[0] if len(users) == 1 and users[0].op in ops else None


def variance_path(square: gs.Node) -> tuple[list[gs.Node] | None, str]:
    """From a squaring node: the path through ReduceMean, Add(eps), Sqrt and the inverse."""
    mean = _only_consumer(square.outputs[0], ("ReduceMean",))
    if mean is None:
        return None, "its square does not feed a ReduceMean"
    path = [square, mean]
    add = _only_consumer(mean.outputs[0], ("Add",))
    if add is None:
        return None, f"ReduceMean '{mean.name}' is not followed by Add(eps)"
    path.append(add)
    root = _only_consumer(add.outputs[0], ("Sqrt", "Rsqrt", "Pow"))
    if root is None:
        return None, f"Add '{add.name}' is not followed by Sqrt"
    path.append(root)
    path += [c for c in root.outputs[0].outputs if c.op in INVERSE]
    # LayerNorm: the squared tensor is x - mean(x); keep the centring and its mean too
    centre = producer(square.inputs[0])
    if centre is not None and centre.op == "Sub":
        path.append(centre)
        mu = producer(centre.inputs[1])
        if mu is not None and mu.op == "ReduceMean":
            path.append(mu)
    return path, "variance path " + " -> ".join(n.op for n in path[:4])


class NormalizationRule:
    name = "normalization"

    def __init__(self, fused: bool = True, decomposed: bool = True):
        self.fused, self.decomposed = bool(fused), bool(decomposed)

    def select(self, graph: gs.Graph, probe=None) -> RuleResult:
        result = RuleResult(self.name)
        for node in graph.nodes:
            if self.fused and node.op in FUSED:
                result.matched[node.name] = f"{node.op} op"
            if not (self.decomposed and _is_square(node)):
                continue
            path, why = variance_path(node)
            if path is None:
                result.near_misses.append({"node": node.name, "reason": f"{node.op} (square): {why}"})
                continue
            for n in path:
                result.matched.setdefault(n.name, f"normalisation {why} from '{node.name}'")
        return result
