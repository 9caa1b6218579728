"""Inputs bound to forward()'s parameters by name, outputs named by the keys the module returns.

Binding by position was silent and wrong whenever the manifest listed inputs in another order than
forward() (the engine input called `attention_mask` was really `input_ids`), or a module returned
a dict in another order than `outputs` named it. Both the FP32 reference and the FP16 export call
the module through the same `Binding`, and the ONNX graph's tensors take the manifest's names.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trtforge.errors import ExportError
from trtforge.manifest import ModuleSpec

if TYPE_CHECKING:  # for the signatures only: torch is imported where a module is run
    import torch

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True)
class Binding:
    """How the manifest's inputs reach forward(): `positional` input names in order, `keyword`
    parameter -> input name, in forward()'s order (both exporters order graph inputs this way)."""

    positional: tuple[str, ...]
    keyword: tuple[tuple[str, str], ...]

    def call(self, tensors: dict) -> tuple[tuple, dict]:
        return (tuple(tensors[n] for n in self.positional), {param: tensors[name] for param, name in self.keyword})

    @property
    def graph_input_names(self) -> list[str]:
        return [*self.positional, *(name for _, name in self.keyword)]


def _parameters(model: torch.nn.Module) -> list[inspect.Parameter]:
    try:  # `method = "decode"`: forward is that method by now (torch_export.use_method)
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # a builtin forward: no names to check
        return []


def bind_inputs(model: torch.nn.Module, module: ModuleSpec) -> Binding:
    """Each input binds to the parameter its `arg` (default: its own name) names, in any order.

    - forward(*args) alone: there are no names; inputs go by position, in manifest order;
    - one input and a forward() of exactly one parameter: bound whatever its name (nothing else it
      could mean; nn.Sequential's parameter is called `input`);
    - forward(**kwargs): names it does not list go there.
    A name that is no parameter, two inputs for one parameter, or a required parameter left
    without input is a one-line error naming the parameters."""
    params = _parameters(model)
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    names = [s.name for s in module.inputs]
    if not params or (not named and any(p.kind == p.VAR_POSITIONAL for p in params)):
        return Binding(tuple(names), ())
    if len(module.inputs) == 1 and len(params) == 1 and named:
        return (
            Binding((), ((named[0].name, names[0]),))
            if named[0].kind != named[0].POSITIONAL_ONLY
            else Binding((names[0],), ())
        )
    by_param: dict[str, str] = {}
    known = {p.name for p in named}
    has_kwargs = any(p.kind == p.VAR_KEYWORD for p in params)
    listing = ", ".join(p.name for p in named) or "(none)"
    for spec in module.inputs:
        where = f"modules.{module.name}.inputs.{spec.name}"
        if spec.arg not in known and not has_kwargs:
            what = f"input '{spec.name}'" + (f" (arg '{spec.arg}')" if spec.arg != spec.name else "")
            raise ExportError(
                f"{what} matches no parameter of forward(); its parameters: {listing}",
                where=where,
                module=module.name,
                hint="rename the input, or bind it with arg = '<parameter>'",
            )
        if spec.arg in by_param:
            raise ExportError(
                f"inputs '{by_param[spec.arg]}' and '{spec.name}' both bind parameter '{spec.arg}'",
                where=where,
                module=module.name,
            )
        by_param[spec.arg] = spec.name
    missing = [p.name for p in named if p.default is p.empty and p.name not in by_param]
    if missing:
        raise ExportError(
            f"forward() parameter '{missing[0]}' has no input (inputs: {', '.join(names)})",
            where=f"modules.{module.name}.inputs",
            module=module.name,
            hint=f"add inputs.{missing[0]}, or bind an input with arg = '{missing[0]}'",
        )
    positional = [p.name for p in named if p.kind == p.POSITIONAL_ONLY and p.name in by_param]
    order = [p.name for p in named if p.name in by_param] + [a for a in by_param if a not in known]
    return Binding(
        tuple(by_param[a] for a in positional), tuple((a, by_param[a]) for a in order if a not in positional)
    )


def flatten_named(out: object, prefix: str | None = None) -> list[tuple[str | None, object]]:
    """(name, tensor) in the exporter's flattening order: dict and ModelOutput keys, named-tuple
    fields, list/tuple indices under a named parent (`hidden_states.0`); None values are dropped,
    as the exporter drops them. A tensor with no name above it gets None."""
    import torch

    if isinstance(out, torch.Tensor):
        return [(prefix, out)]
    if out is None:
        return []
    items: list[tuple[str | None, object]]
    if isinstance(out, dict):
        items = [(str(k), v) for k, v in out.items()]
    elif isinstance(out, tuple) and hasattr(out, "_fields"):
        items = list(zip(out._fields, out))
    elif isinstance(out, (list, tuple)):
        items = [(None if prefix is None else str(i), v) for i, v in enumerate(out)]
        return [pair for k, v in items for pair in flatten_named(v, None if k is None else f"{prefix}.{k}")]
    else:
        raise TypeError(f"unsupported output type {type(out).__name__}")
    return [pair for k, v in items for pair in flatten_named(v, k if prefix is None else f"{prefix}.{k}")]


def name_outputs(out: object, module: ModuleSpec) -> tuple[list[str], list]:
    """Output names and tensors. Named returns (dict, ModelOutput, named tuple) are named by their
    keys, and a manifest `outputs` list must name the same set (any order); plain tensors and
    tuples take `outputs` in order, or output_0, output_1, ..."""
    pairs = flatten_named(out)
    tensors = [t for _, t in pairs]
    where = f"modules.{module.name}.outputs"
    if module.output_renames:
        return _renamed(pairs, module), tensors
    keys = [k for k, _ in pairs if k is not None]
    if pairs and len(keys) == len(pairs):  # every tensor named
        if module.outputs and sorted(module.outputs) != sorted(keys):
            raise ExportError(
                f"the module returns outputs named {keys} but outputs lists {list(module.outputs)}",
                where=where,
                module=module.name,
                hint="list the returned names (any order), or drop outputs to use them",
            )
        return keys, tensors
    names = list(module.outputs) or [f"output_{i}" for i in range(len(tensors))]
    if len(names) != len(tensors):
        raise ExportError(
            f"the module returns {len(tensors)} tensors but outputs names {len(names)}", where=where, module=module.name
        )
    return names, tensors


def _renamed(pairs: list, module: ModuleSpec) -> list[str]:
    """`outputs = { sample = "image" }`: every returned name (keys; output_0, ... for plain
    tensors and tuples) renamed; the table must name each one."""
    keys = [k if k is not None else f"output_{i}" for i, (k, _) in enumerate(pairs)]
    renames = dict(module.output_renames)
    if sorted(renames) != sorted(keys):
        raise ExportError(
            f"the module returns outputs named {keys} but outputs renames {list(renames)}",
            where=f"modules.{module.name}.outputs",
            module=module.name,
            hint="the table's keys are the returned names, each = the engine's name for it",
        )
    return [renames[k] for k in keys]
