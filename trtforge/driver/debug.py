"""`trtforge debug precision`: find the smallest set of FP32 islands that makes a module pass.

1. Run the pure-FP16 post-pass graph with the FP16-faithful evaluator, every tensor kept (the
   evaluator's equivalent of marking intermediates as outputs), next to an FP32 run of the same
   graph, and name the first tensor, in node order, that diverges.
2. Candidate islands: every attention-score chain, normalisation path and node whose FP32
   activations come near 65504 (the built-in rules, run without thresholds).
3. The islands touching near-65504 FP32 activations are tried first; if they do not suffice, all
   candidates are. With those FP32 the module must pass; then bisect (delta debugging over complements)
   by toggling the candidates' Casts, each step judged by the FP16-faithful check against the FP32
   reference with the module's tolerances, down to a set where no island can be dropped.
4. Propose the manifest rule: the built-in rule that selects exactly those islands if there is one,
   and always the exact `name_pattern` rule.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from trtforge.artifacts import ExportFiles, npz
from trtforge.data.tensors import load_arrays
from trtforge.graphs.files import import_graph, load_graph_proto, save_model
from trtforge.precision_rules.activation_range import ActivationRangeRule
from trtforge.precision_rules.attention_score import AttentionScoreRule
from trtforge.precision_rules.cast_realizer import realize_casts
from trtforge.precision_rules.fp32_probe import Probe, tensors_fp32
from trtforge.precision_rules.normalization import NormalizationRule
from trtforge.precision_rules.plan import FP16_MAX, name_unnamed
from trtforge.verify.metrics import compare_all
from trtforge.verify.onnx_check import run_fp16_faithful

DIVERGED_REL = 0.05  # relative L2 error of one tensor; FP16 storage alone is ~1e-3


@dataclass
class Island:
    rule: str
    anchor: str  # the node the island is named after (a Softmax, a square, a hot node)
    nodes: frozenset


@dataclass
class DebugResult:
    passes_pure_fp16: bool
    first_divergence: dict | None = None
    candidates: list = field(default_factory=list)
    islands: list = field(default_factory=list)
    fixed: bool = False
    trials: int = 0
    rules: list = field(default_factory=list)  # TOML lines to add to precision.rules
    failure: str = ""


class Judge:
    """Realise a set of FP32 nodes as Casts on a copy and run the FP16-faithful check."""

    def __init__(self, model, src: Path, feeds: dict, ref: dict, tolerance):
        self.model, self.src, self.feeds, self.ref, self.tolerance = model, src, feeds, ref, tolerance
        self.trials = 0

    def graph(self) -> gs.Graph:
        g = import_graph(copy.deepcopy(self.model), self.src)
        name_unnamed(g)
        return g

    def run(self, fp32: set[str], every_tensor: bool = False) -> dict:
        g = self.graph()
        if fp32:
            realize_casts(g, fp32)
        out = gs.export_onnx(g, do_type_check=True)
        out.ir_version = self.model.ir_version
        with tempfile.TemporaryDirectory(prefix="trtforge-debug-") as tmp:
            save_model(out, self.src, Path(tmp), new_data="debug.data")
            return run_fp16_faithful(Path(tmp), self.feeds, every_tensor=every_tensor)

    def passes(self, fp32: set[str]) -> tuple[bool, str]:
        self.trials += 1
        metrics = compare_all(self.run(fp32), self.ref, self.tolerance)
        bad = [f"{n}: {m['reason']}" for n, m in metrics.items() if not m["ok"]]
        return not bad, "; ".join(bad)


def first_divergence(graph: gs.Graph, fp16: dict, fp32: dict) -> dict | None:
    for node in graph.nodes:
        for t in node.outputs:
            a, r = fp16.get(t.name), fp32.get(t.name)
            if a is None or r is None or not np.issubdtype(np.asarray(a).dtype, np.floating):
                continue
            a, r = np.asarray(a, np.float64), np.asarray(r, np.float64)
            if a.shape != r.shape:
                continue
            bad = int((~np.isfinite(a) & np.isfinite(r)).sum())
            both = np.isfinite(a) & np.isfinite(r)  # where FP32 overflows too, FP16 is not to blame
            rel = 0.0 if bad else float(np.linalg.norm((a - r)[both])) / max(float(np.linalg.norm(r[both])), 1e-12)
            if bad or rel > DIVERGED_REL:
                why = f"{bad} of {a.size} values NaN/Inf" if bad else f"relative error {rel:.3g}"
                return {
                    "tensor": t.name,
                    "node": node.name,
                    "op": node.op,
                    "reason": why,
                    "fp32_max_abs": float(np.abs(r).max(initial=0.0)),
                }
    return None


def candidate_islands(graph: gs.Graph, probe: Probe) -> list[Island]:
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    islands: list[Island] = []
    attn = AttentionScoreRule().select(graph)
    for softmax in sorted({r.split("Softmax '")[1].split("'")[0] for r in attn.matched.values() if "Softmax '" in r}):
        nodes = {n for n, r in attn.matched.items() if f"Softmax '{softmax}'" in r}
        islands.append(Island("attention_score", softmax, frozenset(nodes)))
    islands += [Island("attention_score", n, frozenset([n])) for n, r in attn.matched.items() if "Attention op" in r]
    norm = NormalizationRule().select(graph)
    for anchor in sorted({r.split("from '")[1].rstrip("'") for r in norm.matched.values() if "from '" in r}):
        islands.append(
            Island(
                "normalization", anchor, frozenset(n for n, r in norm.matched.items() if r.endswith(f"from '{anchor}'"))
            )
        )
    islands += [Island("normalization", n, frozenset([n])) for n, r in norm.matched.items() if r.endswith(" op")]
    covered = set().union(*(i.nodes for i in islands)) if islands else set()
    hot = ActivationRangeRule(fraction=0.5, n_random=2).select(graph, probe)
    islands += [Island("activation_range", n, frozenset([n])) for n in hot.matched if n not in covered]
    return sorted(islands, key=lambda i: min(order.get(n, 0) for n in i.nodes))


def hot_islands(graph: gs.Graph, islands: list[Island], peaks: dict, fraction: float = 0.5) -> list[Island]:
    """Islands with a node whose FP32 inputs or outputs reach `fraction` of the FP16 limit."""
    hot = {
        n.name
        for n in graph.nodes
        if any(peaks.get(t.name, 0.0) >= fraction * FP16_MAX for t in (*n.inputs, *n.outputs))
    }
    return [i for i in islands if i.nodes & hot]


def minimise(islands: list[Island], passes) -> list[Island]:
    """Delta debugging over complements: drop a chunk of islands whenever the rest still passes."""
    keep, n = list(islands), 2
    while len(keep) >= 2:
        size = -(-len(keep) // n)
        chunks = [keep[i : i + size] for i in range(0, len(keep), size)]
        for chunk in chunks:
            rest = [i for i in keep if i not in chunk]
            if passes(set().union(*(i.nodes for i in rest)) if rest else set()):
                keep, n = rest, max(n - 1, 2)
                break
        else:
            if n >= len(keep):
                break
            n = min(len(keep), 2 * n)
    if len(keep) == 1 and passes(set()):
        return []
    return keep


def suggest_rules(graph: gs.Graph, probe: Probe, kept: list[Island], candidates: list[Island]) -> list[str]:
    names = sorted(set().union(*(i.nodes for i in kept)))
    exact = f'{{ rule = "name_pattern", nodes = [{", ".join(repr(n).replace(chr(39), chr(34)) for n in names)}] }}'
    rules = []
    attn_all = [i for i in candidates if i.rule == "attention_score"]
    if kept and all(i.rule == "attention_score" for i in kept):
        if len(kept) == len(attn_all):
            rules.append('{ rule = "attention_score" }')
        else:
            auto = AttentionScoreRule(mode="auto", n_random=2)
            if set(auto.select(graph, probe).matched) == set(names):
                rules.append('{ rule = "attention_score", mode = "auto" }')
    return rules + [exact]


def debug_precision(passes_dir: Path, export_dir: Path, tolerance) -> DebugResult:
    model = onnx.shape_inference.infer_shapes(load_graph_proto(passes_dir))
    feeds = load_arrays(export_dir / npz(ExportFiles.CALLER_INPUTS))
    judge = Judge(model, passes_dir, feeds, load_arrays(export_dir / npz(ExportFiles.CALLER_REFERENCE)), tolerance)
    ok, _ = judge.passes(set())
    result = DebugResult(passes_pure_fp16=ok)
    if ok:
        result.fixed, result.trials = True, judge.trials
        return result
    graph = judge.graph()
    probe = Probe(model, passes_dir, feeds)
    result.first_divergence = first_divergence(
        graph, judge.run(set(), every_tensor=True), tensors_fp32(model, passes_dir, feeds)
    )
    candidates = candidate_islands(graph, probe)
    result.candidates = candidates
    everything = set().union(*(i.nodes for i in candidates)) if candidates else set()
    # the activations say where to look first: if the islands that touch near-65504 values
    # suffice, bisect those (4 runs instead of 20 on the 4-block hostile fixture)
    hot = hot_islands(graph, candidates, probe.score_peaks(2, 0))  # masks are not hot
    start = (
        hot
        if hot and len(hot) < len(candidates) and judge.passes(set().union(*(i.nodes for i in hot)))[0]
        else candidates
    )
    if start is candidates:
        ok, why = judge.passes(everything)
        if not ok:
            result.failure = f"still fails with all {len(candidates)} candidate islands FP32: {why}"
            result.trials = judge.trials
            return result
    kept = minimise(start, lambda fp32: judge.passes(fp32)[0])
    result.islands, result.fixed, result.trials = kept, True, judge.trials
    result.rules = suggest_rules(graph, probe, kept, candidates)
    return result
