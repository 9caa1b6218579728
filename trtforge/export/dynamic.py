"""Exporting with dynamic dimensions: torch.export `Dim`s from the manifest's profiles, a one-line
error naming the dimension the model specialises, and a check that the ONNX keeps it symbolic.

torch.onnx.export(dynamo=True) given `dynamic_shapes` silently narrows them when torch.export
raises a constraint violation (it applies torch's "suggested fixes": a dimension the model fixes to
32 becomes 32 in the ONNX, without a word). So the capture is done here with torch.export.export,
whose violation becomes an ExportError naming the dim, and the ExportedProgram goes to the ONNX
exporter; the dims it names s0, s1, ... are renamed back to the manifest's names."""

from __future__ import annotations

import inspect
import re

import onnx
import torch

from trtforge.data.dims import multiples, named_dims, union_ranges
from trtforge.errors import ExportError
from trtforge.export.binding import Binding
from trtforge.manifest import ModuleSpec


def torch_dims(module: ModuleSpec) -> dict[str, object]:
    """One torch.export Dim per named dim that varies across the profiles (a dim whose every
    profile holds it at one value is exported at that value); a multiple_of m is m * Dim."""
    out: dict[str, object] = {}
    steps = multiples(module.profiles)
    for dim, (lo, hi) in union_ranges(module.profiles).items():
        if lo == hi:
            continue
        m = steps.get(dim, 1)
        out[dim] = (
            m * torch.export.Dim(f"_{dim}", min=lo // m, max=hi // m)
            if m > 1
            else torch.export.Dim(dim, min=lo, max=hi)
        )
    return out


def dynamic_shapes(model, binding: Binding, module: ModuleSpec) -> dict | tuple:
    """torch.export's `dynamic_shapes`, keyed like forward()'s parameters (the form it checks):
    {parameter: {axis: Dim}} with *args as a tuple and **kwargs as a dict."""
    dims = torch_dims(module)
    by_name = {s.name: s for s in module.inputs}

    def axes(name: str):
        found = {i: dims[d] for i, d in enumerate(by_name[name].shape) if isinstance(d, str) and d in dims}
        return found or None

    try:
        sig = inspect.signature(model.forward)
        bound = sig.bind(*binding.positional, **dict(binding.keyword))
    except (TypeError, ValueError):  # a builtin forward: inputs go by position
        return tuple(axes(n) for n in binding.positional)
    out: dict[str, object] = {}
    for param, value in bound.arguments.items():
        kind = sig.parameters[param].kind
        if kind == inspect.Parameter.VAR_POSITIONAL:
            out[param] = tuple(axes(n) for n in value)
        elif kind == inspect.Parameter.VAR_KEYWORD:
            out[param] = {k: axes(n) for k, n in value.items()}
        else:
            out[param] = axes(value)
    return out


_VIOLATED = re.compile(r"(?:Constraints violated|Specializations unexpectedly required) \(([^)]*)\)")
_FIX_LINE = re.compile(r"^\s*(\w+) = (.+?)\s*$")


def _fixes(text: str) -> dict[str, str]:
    """torch's 'Suggested fixes:' block as {dim: expression}: '32', '2*_height', 'Dim(...)'."""
    _, _, block = text.partition("Suggested fixes:")
    out = {}
    for line in block.splitlines()[1:]:
        m = _FIX_LINE.match(line)
        if not m:
            break
        out[m.group(1)] = m.group(2)
    return out


def capture(model, args: tuple, kwargs: dict, binding: Binding, module: ModuleSpec):
    """torch.export.export with the module's Dims; a dim the model cannot let vary is a one-line
    ExportError naming it, what torch found, and the manifest change that fixes it."""
    shapes = dynamic_shapes(model, binding, module)
    try:
        # as the ONNX exporter captures (size-oblivious: a dim whose example is 1 stays symbolic)
        with torch.fx.experimental._config.patch(backed_size_oblivious=True):  # type: ignore[attr-defined]
            return torch.export.export(model, args, kwargs=kwargs, dynamic_shapes=shapes, strict=False)
    except torch._dynamo.exc.UserError as e:
        raise specialised_error(str(e), module) from e


def specialised_error(text: str, module: ModuleSpec) -> ExportError:
    """One line naming the first dim torch could not keep dynamic, what the model needs of it
    (a fixed value, a multiple of n, or the guard it failed) and the manifest change."""
    m = _VIOLATED.search(text)
    names = [n.strip() for n in m.group(1).split(",")] if m else []
    first = named_dims(module.inputs)
    dim = next((n for n in names if n in first), names[0] if names else "?")
    where = f"modules.{module.name}.{'dims' if len(module.profiles) == 1 else 'profiles'}.{dim}"
    fix = _fixes(text).get(dim, "")
    step = re.fullmatch(r"(\d+)\s*\*\s*_?\w+", fix)
    guard = re.search(rf"values of {re.escape(dim)} = .*?satisfy the generated guard (.+?)\.?\s*$", text, re.M)
    if fix.isdigit():
        what = f"the model fixes it to {fix}"
        hint = f"make it static ({first.get(dim, 'its shape')} = {fix}), or find what pins it in forward()"
    elif step:
        what = f"the model needs a multiple of {step.group(1)}"
        hint = f"add multiple_of = {step.group(1)} to its range (min, opt and max multiples of it)"
    else:
        what = (
            f"not every value in its range satisfies the model's guard {guard.group(1)}"
            if guard
            else text.strip().splitlines()[0][:200]
        )
        hint = "narrow its range to values the model accepts, or make it static"
    return ExportError(f"dimension '{dim}' cannot vary as declared: {what}", where=where, module=module.name, hint=hint)


def rename_and_check(proto: onnx.ModelProto, module: ModuleSpec) -> dict[str, str]:
    """Give the exported graph's symbolic dims the manifest's names (torch writes s0, s1, ...), in
    inputs, outputs and value_info alike, and refuse an ONNX where a varying dim became a number.
    Returns torch's symbol -> manifest name."""
    varying = set(torch_dims(module))
    by_name = {s.name: s for s in module.inputs}
    rename: dict[str, str] = {}
    for vi in proto.graph.input:
        spec = by_name.get(vi.name)
        if spec is None:
            continue
        for i, (want, d) in enumerate(zip(spec.shape, vi.type.tensor_type.shape.dim)):
            if not isinstance(want, str) or want not in varying:
                continue
            if not d.dim_param:
                raise ExportError(
                    f"dimension '{want}' ({vi.name} axis {i}) is {d.dim_value} in the exported "
                    "ONNX, not symbolic: the model specialised it",
                    where=f"modules.{module.name}.inputs.{vi.name}.shape[{i}]",
                    module=module.name,
                    hint="make it static, or find what pins it in forward()",
                )
            rename.setdefault(d.dim_param, want)
            scaled = re.fullmatch(r"(\d+)\*(\w+)", d.dim_param)  # a multiple_of dim: torch writes 2*s16
            if scaled:
                rename.setdefault(scaled.group(2), f"{want}/{scaled.group(1)}")
    if rename:
        # whole products first ('2*s16' -> 'h'), then lone symbols ('s16' -> 'h/2')
        token = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(rename, key=len, reverse=True)) + r")\b")
        for vi in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
            for d in vi.type.tensor_type.shape.dim:
                if d.dim_param:
                    d.dim_param = token.sub(lambda m: rename[m.group(1)], d.dim_param)
    return rename
