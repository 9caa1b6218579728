"""The pass contract: a pass rewrites a graphsurgeon graph in place and returns whether it changed
anything (truthfully, even a toposort). A pipeline is an explicit ordered list of passes, run once
or to a fixed point, each pass optionally checked for meaning by a `checker` (see meaning.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx_graphsurgeon as gs

from trtforge.errors import InternalError, PassError
from trtforge.graphs.cycles import check_acyclic
from trtforge.graphs.files import import_graph  # noqa: F401  (re-exported for passes)

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
        """Check what must hold before the pass; raise InternalError (a bug; `invariant` does it) or PassError."""

    def ensures(self, graph: gs.Graph) -> None:
        """Check what must hold after the pass."""

    def changes(self) -> list[str]:
        """What the last `apply` changed, one line each, for the report (a pass that can name its
        changes says so; most report only `modified`)."""
        return []

    def stored_fp16(self) -> set[str]:
        """Tensors the last `apply` computed wider and stored as FP16, where the graph declares
        them FP16 (fold_constants): the meaning check rounds them there in the graph before too."""
        return set()

    def params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def signature(graph: gs.Graph) -> tuple:
    """A cheap fingerprint of structure, to tell `modified` honestly when a pass cannot."""
    return tuple(
        (n.op, n.name, tuple(t.name for t in n.inputs), tuple(t.name for t in n.outputs)) for n in graph.nodes
    ) + (tuple(t.name for t in graph.inputs), tuple(t.name for t in graph.outputs))


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
# mismatch. `graph_before_as_onnx` is an onnx.ModelProto taken before `passes` ran; `graph_after`
# is the graph after them, as a gs.Graph or already as an onnx.ModelProto.
Checker = Callable[..., str]


@dataclass
class Pipeline:
    """`check`: each | pipeline | off. `each` checks every pass on its own; with `end_to_end` (big
    models, where one evaluation costs seconds) the passes between two IO-changing passes are
    evaluated once before and once after, and only when that comparison fails is each pass
    evaluated on its own to name the first that broke the graph's meaning."""

    passes: list[GraphPass]
    fixed_point: bool = False
    max_rounds: int = 8
    check: str = "off"  # each | pipeline | off
    checker: Checker | None = None
    snapshot: Callable[[gs.Graph], object] | None = None  # graph -> ModelProto (weights stay on disk)
    end_to_end: bool = False
    reports: list[PassReport] = field(default_factory=list)

    def run(self, graph: gs.Graph, ctx: PassContext) -> bool:
        if self.check not in CHECK_MODES:
            raise PassError(
                f"check '{self.check}' is not one of {', '.join(CHECK_MODES)}", where=f"module {ctx.module}"
            )
        checking = self.check != "off" and self.checker is not None and self.snapshot is not None
        per_pass = checking and self.check == "each" and not self.end_to_end
        segmented = checking and not per_pass
        changed_any = False
        segment: list[tuple] = []  # (pass, report, graph before it) since the last checkpoint
        before_seg = self._snapshot(graph) if segmented else None
        for _ in range(self.max_rounds if self.fixed_point else 1):
            changed = False
            for i, p in enumerate(self.passes):
                n_before = len(graph.nodes)
                before = (
                    self._snapshot(graph)
                    if (per_pass or (segmented and self.check == "each")) and not p.changes_io
                    else None
                )
                if segmented and p.changes_io:
                    self._close(segment, before_seg, graph)
                t0 = time.perf_counter()
                try:
                    p.requires(graph)
                    modified = bool(p.apply(graph, ctx))
                    p.ensures(graph)
                    check_acyclic(graph, ctx.module, f"modules.{ctx.module}.passes[{i}] ({p.name})")
                except (AssertionError, InternalError) as e:
                    ran = ", ".join(q.name for q in self.passes[:i]) or "none"
                    raise InternalError(f"pass '{p.name}' broke an invariant (passes before it: {ran}): {e}") from e
                report = PassReport(
                    p.name,
                    p.params(),
                    modified,
                    n_before,
                    len(graph.nodes),
                    time.perf_counter() - t0,
                    changes=p.changes(),
                )
                self.reports.append(report)
                if checking and p.changes_io:
                    report.check = "verify stage (against the torch caller view)" if modified else "not modified"
                    before_seg = self._snapshot(graph) if segmented else None
                elif per_pass:
                    report.check = self._check([p], before, graph) if modified else "not modified"
                elif segmented:
                    segment.append((p, report, before))
                changed |= modified
            changed_any |= changed
            if not changed:
                break
        if segmented:
            self._close(segment, before_seg, graph)
        return changed_any

    def _snapshot(self, graph: gs.Graph) -> object:
        if self.snapshot is None:  # `checking` requires both
            raise InternalError("pipeline checks its passes but has no snapshot")
        return self.snapshot(graph)

    def _check(self, passes: list[GraphPass], before: object, after: object) -> str:
        if self.checker is None:
            raise InternalError("pipeline checks its passes but has no checker")
        return self.checker(passes, before, after)

    def _close(self, segment: list, before: object, graph: gs.Graph) -> None:
        """Check the passes since the last checkpoint as one step; in `each` mode a failure is
        localised to the first pass that fails on its own."""
        modified = [(p, r, b) for p, r, b in segment if r.modified]
        if modified:
            after = self._snapshot(graph)
            try:
                verdict = self._check([p for p, _, _ in modified], before, after)  # their exactness
            except PassError:
                if self.check == "each":
                    self._localise(segment, after)
                raise
            for _, r, _ in segment:
                if self.check == "pipeline":
                    r.check = f"pipeline: {verdict}"
                elif not r.modified:
                    r.check = "not modified"
                else:
                    r.check = (
                        verdict
                        if len(modified) == 1
                        else f"{verdict} (end to end over {' + '.join(p.name for p, _, _ in modified)})"
                    )
        else:
            for _, r, _ in segment:
                r.check = "pipeline: not modified" if self.check == "pipeline" else "not modified"
        segment.clear()

    def _localise(self, segment: list, after: object) -> None:
        graphs = [b for _, _, b in segment] + [after]
        for k, (p, r, _) in enumerate(segment):
            if r.modified:
                self._check([p], graphs[k], graphs[k + 1])  # raises naming this pass


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
