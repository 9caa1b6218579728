"""Keep nodes whose name matches a regular expression, or exactly the named `nodes` FP32. A named
node that does not exist is an error: a lost FP32 island brings the FP16 failure back."""

from __future__ import annotations

import difflib
import re

import onnx_graphsurgeon as gs

from trtforge.errors import PrecisionError
from trtforge.precision_rules.plan import RuleResult


class NamePatternRule:
    name = "name_pattern"

    def __init__(self, pattern: str | None = None, nodes=()):
        try:
            self.pattern = re.compile(pattern) if pattern else None
        except re.error as e:
            raise PrecisionError(
                f"bad regular expression {pattern!r}: {e}", where="precision.rules.name_pattern.pattern"
            ) from None
        self.nodes = list(nodes)

    def select(self, graph: gs.Graph, probe=None) -> RuleResult:
        result = RuleResult(self.name)
        names = {n.name for n in graph.nodes}
        for wanted in self.nodes:
            if wanted not in names:
                near = difflib.get_close_matches(wanted, sorted(names), n=1)
                raise PrecisionError(
                    f"node '{wanted}' does not exist in the graph",
                    where="precision.rules.name_pattern.nodes",
                    hint=f"did you mean '{near[0]}'?" if near else None,
                )
            result.matched[wanted] = "named in the manifest"
        if self.pattern is not None:
            for node in graph.nodes:
                if self.pattern.search(node.name):
                    result.matched[node.name] = f"name matches /{self.pattern.pattern}/"
            if not result.matched:  # say which names came close, so a typo is found at a glance
                literal = re.sub(r"[\^$\\()\[\]*+?{}|]", "", self.pattern.pattern)
                for near in difflib.get_close_matches(literal, sorted(names), n=3, cutoff=0.5):
                    result.near_misses.append({"node": near, "reason": f"name close to /{self.pattern.pattern}/"})
        return result
