"""The torch side of export. Imported only when an export actually runs."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import traceback
from pathlib import Path

import numpy as np
import onnx
import torch

from trtforge.artifacts import ExportFiles as F
from trtforge.artifacts import npz, reproducible
from trtforge.cache.testhooks import checkpoint
from trtforge.data.dims import describe
from trtforge.data.tensors import save_arrays
from trtforge.data.transforms import transforms
from trtforge.errors import ExportError
from trtforge.export.binding import Binding, bind_inputs, name_outputs
from trtforge.export.caller_view import caller_view, preprocessed_inputs
from trtforge.export.dynamic import capture, rename_and_check
from trtforge.export.fp32_islands import find_fp32_islands
from trtforge.export.input_sets import InputSet, example_sets
from trtforge.graphs.files import MODEL
from trtforge.manifest import ModuleSpec
from trtforge.user_code import resolve_callable

_DATA_DEPENDENT = re.compile(r"GuardOnDataDependentSymNode|data-dependent|DataDependent", re.I)


def load_factory(module: ModuleSpec, root: Path):
    return resolve_callable(
        module.factory, root, where=f"modules.{module.name}.factory", error=ExportError, module=module.name
    )


def build_module(module: ModuleSpec, root: Path) -> torch.nn.Module:
    factory = load_factory(module, root)
    where = f"modules.{module.name}.factory"
    cwd = os.getcwd()
    checkpoint = module.checkpoint_path(root)
    args = (str(checkpoint),) if checkpoint is not None else ()  # from_pretrained(path) reads it
    try:
        model = factory(*args, **module.factory_kwargs(root))
    except ExportError as e:  # already one line naming its file (e.g. a checkpoint)
        e.module = module.name
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # sys.exit() or a BaseException subclass ends the factory, not trtforge
        hint = "check factory_args"
        if checkpoint is not None and isinstance(factory, type) and hasattr(factory, "from_pretrained"):
            hint = f"a checkpoint is loaded by the class's loader: write factory = '{module.factory}.from_pretrained'"
        raise ExportError(f"factory {_raised(e)}", where=where, module=module.name, hint=hint) from e
    finally:
        # a factory that chdir()s must not move the paths of later stages (a relative cache)
        with contextlib.suppress(OSError):
            if os.getcwd() != cwd:
                os.chdir(cwd)
    if not isinstance(model, torch.nn.Module):
        raise ExportError(
            f"factory returned {type(model).__name__}, not a torch.nn.Module", where=where, module=module.name
        )
    if module.method != "forward":
        use_method(model, module)
    return model


def use_method(model: torch.nn.Module, module: ModuleSpec) -> None:
    """`method = "decode"`: the module's forward becomes that method, on this instance (the
    reference, the binding and the export all call forward). Not a wrapper module: a wrapper's
    attribute would prefix every weight and block name (`inner.decoder...`)."""
    method = getattr(model, module.method, None)
    if not callable(method):
        public = [n for n in dir(type(model)) if not n.startswith("_") and callable(getattr(type(model), n, None))]
        near = difflib.get_close_matches(module.method, public, n=1)
        raise ExportError(
            f"{type(model).__name__} has no method '{module.method}'",
            where=f"modules.{module.name}.method",
            module=module.name,
            hint=f"did you mean '{near[0]}'?" if near else "name a method of the module the factory returns",
        )
    model.forward = method  # this instance only


def _fp32(tensors: dict) -> dict:
    return {k: t.float() if t.is_floating_point() else t for k, t in tensors.items()}


def _raised(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    return f"raised {type(e).__name__}: {e}"


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _record_sets(
    module: ModuleSpec, sets: list[InputSet], reference_model, binding: Binding, names: list, device, workdir: Path
) -> None:
    """Each set besides the example one with its FP32 reference and caller's view, so every later
    check compares on it too, and input_sets.json: every set's tag, label and the inputs drawn at
    random in it (the report names them beside a failure)."""
    baked = transforms(module.passes, module.name)
    for s in sets[1:]:
        # a baked preprocessing step without a given image draws the set's own
        seed = int.from_bytes(hashlib.sha256(f"{module.verify.seed}{s.tag}".encode()).digest()[:8], "little")
        inputs, images = preprocessed_inputs(baked, s.inputs, seed, module.name, s.images)
        args, kwargs = binding.call(_fp32({k: torch.from_numpy(a).to(device) for k, a in inputs.items()}))
        reference = _reference(module, reference_model, names, s, args, kwargs)
        c_in, c_ref = caller_view(baked, inputs, reference, module.name, images)
        for stem, arrays in (
            (F.INPUTS, inputs),
            (F.REFERENCE, reference),
            (F.CALLER_INPUTS, c_in),
            (F.CALLER_REFERENCE, c_ref),
        ):
            save_arrays(workdir / npz(stem, s.tag), arrays)
    listing = [{"tag": s.tag, "label": s.label, "random": s.random} for s in sets]
    (workdir / F.SETS).write_text(json.dumps(listing, indent=1))


def _reference(module: ModuleSpec, reference_model, names: list, s: InputSet, args, kwargs) -> dict:
    """The FP32 reference of one set; a profile point the model cannot take is the user's ranges
    (one line naming the set and its shapes), not a bug."""
    try:
        with torch.no_grad():
            _, ref = name_outputs(reference_model(*args, **kwargs), module)
    except (KeyboardInterrupt, ExportError):
        raise
    except Exception as e:
        if not module.profiles:
            raise
        shapes = ", ".join(f"{k}{list(a.shape)}" for k, a in s.inputs.items())
        raise ExportError(
            f"forward failed on input set {s.label} ({shapes}): {_first_line(e)}",
            where=f"modules.{module.name}.{'dims' if len(module.profiles) == 1 else 'profiles'}",
            module=module.name,
            hint="narrow the dims' ranges to shapes the model takes, or make that dimension static",
        ) from e
    return {n: t.detach().float().cpu().numpy() for n, t in zip(names, ref)}


def _check_opset(module: ModuleSpec, proto) -> None:
    """The dynamo exporter converts from its own opset and, when that fails, keeps its own
    without raising: refuse a model in an opset the manifest did not ask for."""
    got = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    want = module.export.opset
    if got != want:
        raise ExportError(
            f"asked for opset {want}, the {module.export.exporter} exporter wrote opset "
            f"{got} (its version conversion failed)",
            where=f"modules.{module.name}.export.opset",
            module=module.name,
            hint=f"set export.opset = {got}, or one the exporter converts to",
        )


def _named_outputs(out, module: ModuleSpec) -> tuple[list[str], list]:
    """name_outputs, with a forward that returns no tensor (an int, a string) as a user error:
    before, a 73-line TypeError traceback (exit 1)."""
    try:
        names, tensors = name_outputs(out, module)
    except TypeError as e:
        if "unsupported output type" not in str(e):
            raise
        raise ExportError(
            f"forward returned {_returned(out)}, not tensors",
            where=f"modules.{module.name}.factory",
            module=module.name,
            hint="return a tensor, or a tuple, list, dict or ModelOutput of tensors",
        ) from None
    if not tensors:
        raise ExportError(
            f"forward returned no tensor ({_returned(out)})",
            where=f"modules.{module.name}.factory",
            module=module.name,
            hint="return a tensor, or a tuple, list, dict or ModelOutput of tensors",
        )
    return names, tensors


def _returned(out) -> str:
    text = repr(out)
    return f"{type(out).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _check_names_apart(inputs: list[str], outputs: list[str], module: ModuleSpec) -> None:
    """A graph input and output of one name make a graph that feeds itself (diffusers' UNet takes
    `sample` and returns `.sample`): legalize_dtypes then walked it for 9+ minutes to 22.7 GiB."""
    both = [n for n in outputs if n in inputs]
    if both:
        n = both[0]
        raise ExportError(
            f"input '{n}' and output '{n}' share a name: the graph's output would feed its own input",
            where=f"modules.{module.name}.inputs.{n}",
            module=module.name,
            hint=f"rename the input and bind it to the parameter, e.g. inputs.{n}_in = {{ arg = '{n}', ... }}",
        )


def export_module(module: ModuleSpec, root: Path, workdir: Path) -> dict:
    device = _device()
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference is true FP32
    torch.backends.cudnn.allow_tf32 = False
    # one copy of the weights at a time: the FP32 reference runs first, then the same module is
    # converted to FP16 in place (a deepcopy held FP32 and FP16 copies at once: 6.7 vs 3.6 GiB
    # peak for an SD1.5 UNet). FP16 -> FP32 -> FP16 is exact, so a factory's FP16 weights survive.
    # every input set first: a missing or malformed data file fails before the model loads
    sets = example_sets(module, root)
    model = build_module(module, root)
    reference_model = model.float().eval().to(device)

    baked = transforms(module.passes, module.name)
    # a baked preprocessing step: the module's input is computed from a uint8 image, with torch
    inputs, images = preprocessed_inputs(baked, sets[0].inputs, module.verify.seed, module.name, sets[0].images)
    as_torch = {k: torch.from_numpy(np.ascontiguousarray(a)).to(device) for k, a in inputs.items()}
    # by name: the reference and the export call forward() the same way (export/binding.py)
    binding = bind_inputs(model, module)
    fp32_args, fp32_kwargs = binding.call(_fp32(as_torch))
    try:
        with torch.no_grad():
            out = reference_model(*fp32_args, **fp32_kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        shapes = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in module.inputs)
        raise ExportError(
            f"forward failed on the example inputs ({shapes}): {_first_line(e)}",
            where=f"modules.{module.name}.inputs",
            module=module.name,
            hint="check each input's shape and dtype against the module's forward",
        ) from e

    names, ref = _named_outputs(out, module)
    _check_names_apart(binding.graph_input_names, names, module)
    save_arrays(workdir / npz(F.INPUTS), inputs)
    reference = {n: t.detach().float().cpu().numpy() for n, t in zip(names, ref)}
    save_arrays(workdir / npz(F.REFERENCE), reference)
    c_in, c_ref = caller_view(baked, inputs, reference, module.name, images)
    save_arrays(workdir / npz(F.CALLER_INPUTS), c_in)
    save_arrays(workdir / npz(F.CALLER_REFERENCE), c_ref)
    _record_sets(module, sets, reference_model, binding, names, device, workdir)
    n_sets = len(sets)
    del sets
    checkpoint("work:export")
    del ref, out, reference_model, fp32_args, fp32_kwargs
    model16 = model.half().eval()

    # FP16 inputs are already FP16 by dtype
    fp16_args, fp16_kwargs = binding.call({k: t.contiguous() for k, t in as_torch.items()})
    path = workdir / MODEL
    try:
        # autocast OFF: tracing under autocast forced BatchNorm inputs to FP32 and broke FP16 models
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            # dynamic dims: captured here, so that a dim the model specialises is an error naming it
            # (torch.onnx.export would narrow it silently; export/dynamic.py)
            source = capture(model16, fp16_args, fp16_kwargs, binding, module) if module.profiles else model16
            program = torch.onnx.export(
                source,
                fp16_args,
                kwargs=fp16_kwargs,
                dynamo=module.export.exporter == "dynamo",
                input_names=binding.graph_input_names,
                output_names=names,
                opset_version=module.export.opset,
                external_data=True,
                f=None if module.export.exporter == "dynamo" else str(path),
                verbose=False,
            )
        if program is not None:
            program.save(str(path), external_data=True)
    except (KeyboardInterrupt, ExportError):
        raise
    except BaseException as e:
        text = "".join(traceback.format_exception_only(type(e), e))
        if _DATA_DEPENDENT.search(text) or _DATA_DEPENDENT.search(repr(e.__cause__)):
            raise ExportError(
                "forward branches on tensor values (data-dependent control flow), which the export "
                "cannot capture: the export resolves only branches on shapes (static shapes, or the "
                "ranges of named dims)",
                where=f"modules.{module.name}",
                module=module.name,
                hint="compute both branches and pick with torch.where",
            ) from e
        raise ExportError(
            f"torch.onnx.export failed: {_first_line(e)}",
            where=f"modules.{module.name}",
            module=module.name,
            hint="rerun with --verbose for the exporter's cause",
        ) from e

    proto = onnx.load(str(path), load_external_data=False)
    if module.profiles and rename_and_check(proto, module):
        onnx.save(proto, str(path))  # the graph only: its weights stay in their external file
    _check_opset(module, proto)
    islands = find_fp32_islands(proto)
    for island in islands:  # the report warns only about the others
        island["expected"] = module.export.expects(island)
    unexpected = [i for i in islands if not i["expected"]]
    if unexpected and module.export.forbid_fp32_islands:
        # name real arithmetic first: the Cast into the island only marks where it starts
        first = next((i for i in unexpected if i["op"] != "Cast"), unexpected[0])
        raise ExportError(
            f"{len(unexpected)} FP32 island(s) in the FP16 export, first: node '{first['node']}' ({first['op']})"
            + (f" in {first['in']}" if first.get("in") else ""),
            where=f"modules.{module.name}.export",
            module=module.name,
            hint="fix the hard-coded float32 tensor or set forbid_fp32_islands = false",
        )
    meta = {
        "device": str(device),
        "torch": torch.__version__,
        "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in inputs.items()},
        "outputs": {n: {"shape": list(a.shape)} for n, a in reference.items()},
        "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0),
        "nodes": len(proto.graph.node),
        "fp32_islands": islands,
        "input_sets": n_sets,
    }
    if module.profiles:
        meta["profiles"] = describe(module.profiles, module.inputs)
    (workdir / F.META).write_text(json.dumps(reproducible(meta), indent=1))
    return meta
