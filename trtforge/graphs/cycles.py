"""A graph that feeds itself: a node that (through others) reads its own output. ONNX forbids it,
but nothing in the exporter stops it: a manifest input named like an output (diffusers' UNet takes
`sample` and returns `UNet2DConditionOutput.sample`) gave a graph whose input was also its output,
and legalize_dtypes' walk then grew for 9+ minutes to 22.7 GiB. Every graph walker checks here
first and stops with one line naming a node on the cycle (exit 2)."""

from __future__ import annotations

from trtforge.errors import TrtforgeError


class GraphCycleError(TrtforgeError):
    """The graph has a cycle; names a node on it. A user error (exit 2): it came from the model."""


def cycle_node(graph):
    """A node on a cycle of the onnx-graphsurgeon graph, or None (iterative: no recursion limit)."""
    state: dict[int, int] = {}  # absent: new, 1: on the current path, 2: done
    for root in graph.nodes:
        if id(root) in state:
            continue
        state[id(root)] = 1
        stack = [(root, iter([p for t in root.inputs for p in t.inputs]))]
        while stack:
            node, producers = stack[-1]
            nxt = next(producers, None)
            if nxt is None:
                state[id(node)] = 2
                stack.pop()
                continue
            seen = state.get(id(nxt))
            if seen == 1:
                return nxt
            if seen is None:
                state[id(nxt)] = 1
                stack.append((nxt, iter([p for t in nxt.inputs for p in t.inputs])))
    return None


def node_label(node) -> str:
    return f"node '{node.name}' ({node.op})" if node.name else f"{node.op} node (output '{node.outputs[0].name}')"


def cycle_error(label: str, module: str = "", where: str = "") -> GraphCycleError:
    return GraphCycleError(
        f"the graph has a cycle through {label}: it reads its own output",
        where=where or (f"modules.{module}" if module else "graph"),
        module=module or None,
        hint="a graph input and an output that share a name feed the graph into itself; rename the input "
        "(inputs.<new name> = { arg = '<forward parameter>', ... }) or the output",
    )


def check_acyclic(graph, module: str = "", where: str = "") -> None:
    """GraphCycleError naming a node on a cycle, if the graph has one."""
    node = cycle_node(graph)
    if node is not None:
        raise cycle_error(node_label(node), module, where)
