"""The pass contract: a pass rewrites a graphsurgeon graph in place and returns whether it changed
anything (truthfully, even a toposort). A pipeline is an explicit ordered list of passes, run once
or to a fixed point, each pass optionally checked for meaning by a `checker` (see meaning.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx_graphsurgeon as gs

from trtforge.errors import PassError
from trtforge.onnx_files import import_graph  # noqa: F401  (re-exported for passes)

CHECK_MODES = ("each", "pipeline", "off")


@dataclass
class PassContext:
    base_dir: Path  # where the graph's external data lives
    module: str = ""


class GraphPass:
    """Subclasses set `name` and implement `apply`. Parameters are constructor keyword arguments.

    `exact`: the pass only restructures, so ONNX Runtime must give bit-identical outputs before and
    after; a folding pass sets it False and is held to `meaning.FOLD_TOLERANCE` instead.
    `changes_io`: the pass changes the graph's inputs or outputs (a baking pass); it is checked by
    the verify stage against the torch caller view, not here."""

    name = "pass"
    exact = True
    changes_io = False

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        raise NotImplementedError

    def requires(self, graph: gs.Graph) -> None:
        """Check what must hold before the pass; raise AssertionError (a bug) or PassError."""

    def ensures(self, graph: gs.Graph) -> None:
        """Check what must hold after the pass."""

    def changes(self) -> list[str]:
        """What the last `apply` changed, one line each, for the report (a pass that can name its
        changes says so; most report only `modified`)."""
        return []

    def params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def signature(graph: gs.Graph) -> tuple:
    """A cheap fingerprint of structure, to tell `modified` honestly when a pass cannot."""
    return tuple((n.op, n.name, tuple(t.name for t in n.inputs), tuple(t.name for t in n.outputs))
                 for n in graph.nodes) + (tuple(t.name for t in graph.inputs),
                                          tuple(t.name for t in graph.outputs))


@dataclass
class PassReport:
    name: str
    params: dict
    modified: bool
    nodes_before: int
    nodes_after: int
    seconds: float
    check: str = "off"
    changes: list[str] = field(default_factory=list)


# checker(passes, graph_before_as_onnx, graph_after) -> a one-line verdict; raises PassError on a
# mismatch. `graph_before_as_onnx` is an onnx.ModelProto taken before `passes` ran.
Checker = Callable[[list, object, gs.Graph], str]


@dataclass
class Pipeline:
    passes: list[GraphPass]
    fixed_point: bool = False
    max_rounds: int = 8
    check: str = "off"  # each | pipeline | off
    checker: Checker | None = None
    snapshot: Callable[[gs.Graph], object] | None = None  # graph -> ModelProto (weights stay on disk)
    reports: list[PassReport] = field(default_factory=list)

    def run(self, graph: gs.Graph, ctx: PassContext) -> bool:
        if self.check not in CHECK_MODES:
            raise PassError(f"check '{self.check}' is not one of {', '.join(CHECK_MODES)}",
                            where=f"module {ctx.module}")
        checking = self.check != "off" and self.checker is not None and self.snapshot is not None
        changed_any = False
        segment: list[GraphPass] = []  # passes since the last checkpoint (pipeline mode)
        seg_reports: list[PassReport] = []
        before_seg = self.snapshot(graph) if checking and self.check == "pipeline" else None
        for _ in range(self.max_rounds if self.fixed_point else 1):
            changed = False
            for i, p in enumerate(self.passes):
                n_before = len(graph.nodes)
                before = self.snapshot(graph) if checking and self.check == "each" and not p.changes_io else None
                if checking and self.check == "pipeline" and p.changes_io:
                    self._close(segment, seg_reports, before_seg, graph)
                t0 = time.perf_counter()
                try:
                    p.requires(graph)
                    modified = bool(p.apply(graph, ctx))
                    p.ensures(graph)
                except AssertionError as e:
                    ran = ", ".join(q.name for q in self.passes[:i]) or "none"
                    raise AssertionError(f"pass '{p.name}' broke an invariant (passes before it: "
                                         f"{ran}): {e}") from e
                report = PassReport(p.name, p.params(), modified, n_before, len(graph.nodes),
                                    time.perf_counter() - t0, changes=p.changes())
                self.reports.append(report)
                if checking and p.changes_io:
                    report.check = "verify stage (against the torch caller view)" if modified else "not modified"
                    before_seg = self.snapshot(graph) if self.check == "pipeline" else None
                elif checking and self.check == "each":
                    report.check = self.checker([p], before, graph) if modified else "not modified"
                elif checking:
                    segment.append(p)
                    seg_reports.append(report)
                changed |= modified
            changed_any |= changed
            if not changed:
                break
        if checking and self.check == "pipeline":
            self._close(segment, seg_reports, before_seg, graph)
        return changed_any

    def _close(self, segment: list, reports: list, before, graph: gs.Graph) -> None:
        """Pipeline mode: check the passes since the last checkpoint as one step."""
        if segment:
            verdict = (self.checker(list(segment), before, graph) if any(r.modified for r in reports)
                       else "not modified")
            for r in reports:
                r.check = f"pipeline: {verdict}"
        segment.clear()
        reports.clear()


def find_tensor(graph: gs.Graph, name: str, kind: str, pass_name: str) -> gs.Variable:
    pool = graph.inputs if kind == "input" else graph.outputs
    for t in pool:
        if t.name == name:
            return t
    names = ", ".join(t.name for t in pool)
    raise PassError(f"graph has no {kind} '{name}' (its {kind}s: {names})", where=f"pass {pass_name}")


def bypass(graph: gs.Graph, node: gs.Node, inp: gs.Tensor, out: gs.Tensor) -> bool:
    """Make `out`'s consumers read `inp` instead, so `node` (out = f(inp), f the identity) dies
    in cleanup. A graph output keeps its name: the producer of `inp` writes `out` directly. Returns
    False where neither is possible (inp is a graph input, a constant or itself an output)."""
    if out in graph.outputs:
        if inp in graph.inputs or inp in graph.outputs or isinstance(inp, gs.Constant) or not inp.inputs:
            return False
        if any(c is not node for c in inp.outputs):  # others read inp: they switch to out
            for consumer in list(inp.outputs):
                if consumer is not node:
                    consumer.inputs[consumer.inputs.index(inp)] = out
        producer = inp.inputs[0]
        node.outputs.clear()
        node.inputs.clear()
        producer.outputs[producer.outputs.index(inp)] = out
        return True
    for consumer in list(out.outputs):
        for j, t in enumerate(consumer.inputs):
            if t is out:
                consumer.inputs[j] = inp
    node.outputs.clear()
    node.inputs.clear()
    return True
