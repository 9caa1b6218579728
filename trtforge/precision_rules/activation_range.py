"""Keep nodes FP32 whose activations, in an FP32 run of the graph, come near the FP16 limit.

Runs the FP16 export widened to FP32 with ONNX Runtime (fp32_probe) on the example inputs plus
`n_random` seeded random inputs. A node is kept when one of its float inputs or outputs reaches
`fraction` * 65504: its output must not be stored as FP16, and neither may its input (a Cast to
FP16 in front of it would overflow just the same). Nodes within 4x of the bound are near misses.
On a Softmax's mask path, mask entries (-inf, about -65504) do not count (fp32_probe).
This works on native FP16 exports, where AutoCast (FP32 graphs only) cannot.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from trtforge.errors import PrecisionError
from trtforge.precision_rules.plan import FP16_MAX, RuleResult
from trtforge.precision_rules.score_graph import mask_path_nodes

NO_MATH = {"Shape", "Size", "Constant", "ConstantOfShape", "Cast", "CastLike"}


class ActivationRangeRule:
    name = "activation_range"

    def __init__(self, fraction: float = 0.5, n_random: int = 4, seed: int = 0):
        if not 0 < float(fraction) <= 1:
            raise PrecisionError(
                f"fraction must be in (0, 1], got {fraction}", where="precision.rules.activation_range.fraction"
            )
        self.fraction, self.n_random, self.seed = float(fraction), int(n_random), int(seed)

    def select(self, graph: gs.Graph, probe=None) -> RuleResult:
        if probe is None:
            raise PrecisionError(
                "activation_range needs example inputs and none were given", where="precision.rules.activation_range"
            )
        peaks = dict(probe.peaks(self.n_random, self.seed))
        # on a Softmax's mask path, mask entries (-inf, about -65504) are no activations near the
        # limit (-65504 is exact in FP16): left out there, as `attention_score`'s `auto` does;
        # anywhere else a value that low is a real overflow and counts
        unmasked = probe.score_peaks(self.n_random, self.seed)
        for node in mask_path_nodes(graph):
            for n in (node, *(c for t in node.outputs for c in t.outputs if c.op == "Softmax")):
                for t in (*n.inputs, *n.outputs):
                    if t.name in unmasked:
                        peaks[t.name] = unmasked[t.name]
        bound = self.fraction * FP16_MAX
        result = RuleResult(self.name)
        for node in graph.nodes:
            if node.op in NO_MATH:
                continue
            seen = [
                (t.name, peaks[t.name])
                for t in (*node.inputs, *node.outputs)
                if isinstance(t, gs.Variable) and t.name in peaks
            ]
            if not seen:
                continue
            name, peak = max(seen, key=lambda x: x[1])
            where = "output" if name in {t.name for t in node.outputs} else "input"
            if peak >= bound:
                result.matched[node.name] = (
                    f"{where} '{name}' reaches {peak:.4g} in FP32 "
                    f"(>= {self.fraction:g} x 65504 over {1 + self.n_random} inputs)"
                )
            elif peak >= bound / 4:
                result.near_misses.append(
                    {"node": node.name, "reason": f"{node.op}: {where} '{name}' reaches {peak:.4g}, below {bound:.4g}"}
                )
        return result
