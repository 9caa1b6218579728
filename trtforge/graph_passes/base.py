"""The pass contract: a pass rewrites a graphsurgeon graph in place and returns whether it changed
anything (truthfully, even a toposort). A pipeline is an explicit ordered list of passes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx_graphsurgeon as gs

from trtforge.errors import PassError
from trtforge.onnx_files import import_graph  # noqa: F401  (re-exported for passes)


@dataclass
class PassContext:
    base_dir: Path  # where the graph's external data lives
    module: str = ""


class GraphPass:
    """Subclasses set `name` and implement `apply`. Parameters are constructor keyword arguments."""

    name = "pass"

    def apply(self, graph: gs.Graph, ctx: PassContext) -> bool:
        raise NotImplementedError

    def requires(self, graph: gs.Graph) -> None:
        """Check what must hold before the pass; raise AssertionError (a bug) or PassError."""

    def ensures(self, graph: gs.Graph) -> None:
        """Check what must hold after the pass."""

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


@dataclass
class Pipeline:
    passes: list[GraphPass]
    fixed_point: bool = False
    max_rounds: int = 8
    reports: list[PassReport] = field(default_factory=list)

    def run(self, graph: gs.Graph, ctx: PassContext) -> bool:
        changed_any = False
        for _ in range(self.max_rounds if self.fixed_point else 1):
            changed = False
            for i, p in enumerate(self.passes):
                before = len(graph.nodes)
                t0 = time.perf_counter()
                try:
                    p.requires(graph)
                    modified = bool(p.apply(graph, ctx))
                    p.ensures(graph)
                except AssertionError as e:
                    ran = ", ".join(q.name for q in self.passes[:i]) or "none"
                    raise AssertionError(f"pass '{p.name}' broke an invariant (passes before it: "
                                         f"{ran}): {e}") from e
                self.reports.append(PassReport(p.name, p.params(), modified, before, len(graph.nodes),
                                               time.perf_counter() - t0))
                changed |= modified
            changed_any |= changed
            if not changed:
                break
        return changed_any


def find_tensor(graph: gs.Graph, name: str, kind: str, pass_name: str) -> gs.Variable:
    pool = graph.inputs if kind == "input" else graph.outputs
    for t in pool:
        if t.name == name:
            return t
    names = ", ".join(t.name for t in pool)
    raise PassError(f"graph has no {kind} '{name}' (its {kind}s: {names})", where=f"pass {pass_name}")
