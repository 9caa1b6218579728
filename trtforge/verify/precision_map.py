"""A per-block FP16/FP32 map for the report: every node of the precision-realised graph in order,
grouped by the module block it came from, marked FP32 (kept by a rule), Cast (inserted by the
realiser) or FP16.

Blocks come from the dynamo exporter's `pkg.torch.onnx.name_scopes` metadata on the exported
graph (graphsurgeon drops metadata in later stages, so node names are the link). A node without a
scope (added by a pass or the realiser) joins the block of the node before it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from trtforge.graphs.files import load_graph_proto

_REPEATED = re.compile(r"\.\d+$")  # blocks.3, layers.11: one entry of a repeated stack


# the exporter's own scope names, not the model's (`_empty_nn_module_stack`: a node traced outside
# any submodule); never shown as a block
_INTERNAL = re.compile(r"^(_empty_nn_module_stack|__)")


def block_of(scopes: list[str]) -> str:
    """The outermost repeated-stack scope (blocks.3, not blocks.3.mlp.0), else the top-level child
    (embed, head)."""
    named = [s for s in scopes if s]
    modules = [s for s in named[:-1] if not _INTERNAL.match(s)]  # the last scope is the op itself
    for s in modules:
        if _REPEATED.search(s):
            return s
    return modules[0] if modules else "(top level)"


def _scopes(folder: Path) -> dict[str, str]:
    out = {}
    for node in load_graph_proto(folder).graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                try:
                    out[node.name] = block_of(list(ast.literal_eval(prop.value)))
                except (ValueError, SyntaxError):
                    pass
    return out


def precision_map(export_dir: Path, precision_dir: Path, fp32: dict) -> list[dict]:
    """[{"block", "nodes": [[name, op, "fp16" | "fp32" | "cast"], ...]}], blocks in order of first
    appearance, nodes in graph order."""
    scopes = _scopes(export_dir)
    blocks: dict[str, list] = {}
    current = "(top level)"
    for node in load_graph_proto(precision_dir).graph.node:
        if node.op_type == "Constant":
            continue
        current = scopes.get(node.name, current)
        kind = "fp32" if node.name in fp32 else "cast" if node.op_type == "Cast" and node.name not in scopes else "fp16"
        blocks.setdefault(current, []).append([node.name, node.op_type, kind])
    return [{"block": b, "nodes": nodes} for b, nodes in blocks.items()]
