"""Parse, check and build with polygraphy's loaders. Imported only when a build actually runs."""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

from trtforge import backends as be
from trtforge.artifacts import BuildFiles, PrecisionFiles, reproducible
from trtforge.builder.timing import FILE as TIMING_FILE
from trtforge.builder.timing import save as save_timing_cache
from trtforge.builder.timing import with_timing_cache
from trtforge.cache.testhooks import checkpoint
from trtforge.data.dims import describe
from trtforge.errors import BuildError
from trtforge.graphs.files import MODEL
from trtforge.processes import interrupts
from trtforge.stage import StageContext

CHECKED_TYPES = ("MATRIX_MULTIPLY", "SOFTMAX", "CONVOLUTION", "DECONVOLUTION")
BEFORE_PASSES_LIMIT = 512 << 20  # bytes of exported model above which the before-passes parse is skipped


def _imports(backend: str):
    be.select(backend)
    from polygraphy.backend import trt as ptrt
    from polygraphy.logger import G_LOGGER
    from polygraphy.mod.trt_importer import lazy_import_trt

    return ptrt, G_LOGGER, lazy_import_trt()


def network_layers(network) -> list[dict]:
    layers = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        layers.append(
            {
                "name": layer.name,
                "type": str(layer.type).split(".")[-1],
                "outputs": [str(layer.get_output(j).dtype).split(".")[-1] for j in range(layer.num_outputs)],
            }
        )
    return layers


def shape_layer_count(layers: list[dict]) -> int:
    """Layers that only compute shapes (INT64/INT32 outputs, no float output)."""
    return sum(
        1 for layer in layers if layer["outputs"] and all(o in ("INT64", "INT32", "BOOL") for o in layer["outputs"])
    )


def check_precisions(layers: list[dict], plan: dict, module: str) -> dict:
    """Planned FP32 nodes must be FLOAT layers; other compute layers HALF. A mismatch fails."""
    fp32 = {name for name, v in plan.items() if v.get("op") in ("MatMul", "Softmax", "Gemm", "Conv")}
    by_name = {layer["name"]: layer for layer in layers}
    missing = sorted(n for n in fp32 if n not in by_name)
    if missing:
        raise BuildError(
            f"planned FP32 node '{missing[0]}' has no layer of that name in the parsed "
            f"network ({len(missing)} missing)",
            where=f"modules.{module}.precision",
            module=module,
            hint="a lost FP32 island brings the FP16 overflow back; report this graph to the trtforge maintainers",
        )
    wrong, counts = [], {"FLOAT": 0, "HALF": 0}
    for layer in layers:
        if layer["type"] not in CHECKED_TYPES:
            continue
        want = "FLOAT" if layer["name"] in fp32 else "HALF"
        got = layer["outputs"][0]
        counts[got] = counts.get(got, 0) + 1
        if got != want:
            wrong.append(f"{layer['name']} ({layer['type']}) is {got}, planned {want}")
    if wrong:
        raise BuildError(
            f"precision plan not honoured: {wrong[0]} ({len(wrong)} layers)",
            where=f"modules.{module}.precision",
            module=module,
        )
    return counts


def apply_layer_precisions(network, trt, plan: dict, module: str) -> None:
    """Weakly typed TensorRT 10: planned layers FLOAT + output type FLOAT; missing is an error."""
    names = {network.get_layer(i).name: network.get_layer(i) for i in range(network.num_layers)}
    for node in plan:
        layer = names.get(node)
        if layer is None:
            raise BuildError(
                f"planned FP32 node '{node}' is not a layer of the parsed network",
                where=f"modules.{module}.precision",
                module=module,
            )
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in (trt.float16, trt.float32):
                layer.set_output_type(j, trt.float32)


def build_engine(ctx: StageContext, workdir: Path, backend: str, target: dict) -> dict:
    src = ctx.inputs.precision_rules.folder
    plan = json.loads((src / PrecisionFiles.PLAN).read_text())
    ptrt, _, trt = _imports(backend)
    log_path = workdir / BuildFiles.LOG
    # polygraphy's own "[!] Could not parse ONNX" goes to stderr: keep it in build.log too
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return _build(ptrt, trt, ctx, workdir, backend, target, plan, log_path)


def weight_file_bytes(folder: Path) -> int:
    """Bytes of an ONNX folder's external-data files (its weights), without opening the graph."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.suffix in (".data", ".bin"))


def memory_guard(src: Path, module: str) -> None:
    """Refuse a build this machine plainly cannot hold, before spending minutes on it. The
    TensorRT-RTX builder peaked at 3.3x the FP16 weights (SD1.5 UNet, 1.6 GB: 5.3 GiB, of it 1.7
    GiB the mapped weight file), so that, plus half a GiB, is the estimate."""
    from trtforge.processes.isolate import machine_memory

    weights = weight_file_bytes(src)
    need, have = int(3.3 * weights) + (512 << 20), machine_memory()
    if have is not None and need > have:
        raise BuildError(
            f"the build needs about {need / 2**30:.1f} GiB of memory ({weights / 2**30:.1f} GiB "
            f"of weights) and this machine has {have / 2**30:.1f} GiB",
            where=f"modules.{module}.build",
            module=module,
            hint="build on a machine with more memory",
        )


def _build(ptrt, trt, ctx, workdir, backend, target, plan, log_path) -> dict:
    realizer = plan["realizer"]
    src = ctx.inputs.precision_rules.folder
    module = ctx.module.name
    memory_guard(src, module)
    opts = ctx.module.build

    strongly_typed = realizer == "casts"
    # first, and freed before the real parse: the build never holds two networks' weights
    before = layers_before_passes(ptrt, ctx, strongly_typed)
    t0 = time.perf_counter()
    try:
        builder, network, parser = ptrt.network_from_onnx_path(str(src / MODEL), strongly_typed=strongly_typed)
    except Exception as e:
        raise _parse_error(e, log_path, module) from e
    parse_s = time.perf_counter() - t0
    layers = network_layers(network)
    counts = check_precisions(layers, plan["fp32"], module) if strongly_typed else {}
    if not strongly_typed:
        apply_layer_precisions(network, trt, plan["fp32"], module)

    common = dict(
        builder_optimization_level=opts.optimization_level,
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: opts.workspace_mib << 20},
    )
    monitor = _progress_monitor(trt)
    if monitor is not None:
        common["progress_monitor"] = monitor  # also how a signal cancels the build
    profiles = describe(ctx.module.profiles, ctx.module.inputs)
    if profiles:  # one TensorRT optimization profile per manifest profile, in order
        common["profiles"] = trt_profiles(ptrt, profiles)
    if backend == be.RTX:
        from polygraphy.backend.tensorrt_rtx import CreateConfigRTX

        ccs = [tuple(int(x) for x in c.split(".")) for c in target["compute_capabilities"]]
        config = CreateConfigRTX(compute_capabilities=ccs if target.get("explicit") else None, **common)
    else:
        extra = {} if strongly_typed else {"fp16": True, "precision_constraints": "obey"}
        config = ptrt.CreateConfig(**common, **extra)
    holder: list = []  # the IBuilderConfig, for its timing cache after the build
    if backend != be.RTX:  # TensorRT-RTX builds ahead of time and times nothing: no timing cache
        config = with_timing_cache(config, ctx.timing_cache, holder)
    t0 = time.perf_counter()
    try:
        # signals are only recorded inside the builder (an exception raised in its callbacks is
        # swallowed); the monitor then cancels the build and leaving the block raises Interrupted
        with interrupts.deferred():
            engine_bytes = _build_to_file(ptrt, trt, (builder, network, parser), config, workdir / BuildFiles.ENGINE)
    except Exception as e:
        raise BuildError(
            f"engine build failed: {_last_error(log_path) or e}",
            where=f"modules.{module}.build",
            module=module,
            hint="the builder's log names the failing layer",
        ) from e
    build_s = time.perf_counter() - t0
    if not engine_bytes:
        raise BuildError(
            f"engine build failed: {_last_error(log_path)}", where=f"modules.{module}.build", module=module
        )
    timing = save_timing_cache(holder, workdir / TIMING_FILE, ctx.timing_cache)
    meta = {
        "backend": backend,
        "backend_version": trt.__version__,
        "target": target,
        "strongly_typed": strongly_typed,
        "parse_s": round(parse_s, 3),
        "build_s": round(build_s, 3),
        "layers": len(layers),
        "shape_layers": shape_layer_count(layers),
        "precision_counts": counts,
        "layers_before_passes": before,
        "fp32_layers": sorted(
            lay["name"] for lay in layers if lay["type"] in CHECKED_TYPES and lay["outputs"][0] == "FLOAT"
        ),
        "io": io_bindings(network),
        "engine_bytes": engine_bytes,
        "timing_cache": timing,  # not in the key (it grows): its digest, and the one it started from
    }
    if profiles:
        meta["profiles"] = profiles
    (workdir / BuildFiles.LAYERS).write_text(json.dumps(layers, indent=0))
    (workdir / BuildFiles.META).write_text(json.dumps(reproducible(meta), indent=1))
    return meta


def trt_profiles(ptrt, profiles: list[dict]) -> list:
    """polygraphy Profiles (the same call for TensorRT 10/11 and TensorRT-RTX) from
    dims.describe's [{input: {min, opt, max}}]."""
    out = []
    for shapes in profiles:
        profile = ptrt.Profile()
        for name, pts in shapes.items():
            profile.add(name, min=pts["min"], opt=pts["opt"], max=pts["max"])
        out.append(profile)
    return out


def _build_to_file(ptrt, trt, network: tuple, config, path: Path) -> int:
    """Build and write the engine; its size in bytes (0: the builder failed). Where the builder can
    stream the plan (builder.build_serialized_network_to_stream, in TensorRT-RTX and recent TensorRT) it goes
    straight to the file; polygraphy's engine_bytes_from_network returns it in host memory and a
    bytes() copy doubled it (SD1.5 UNet, 1.6 GB of weights: peak 5.3 GiB streamed vs 5.6 GiB)."""
    builder, net, _ = network
    if not hasattr(builder, "build_serialized_network_to_stream") or not hasattr(trt, "IStreamWriter"):
        engine = ptrt.engine_bytes_from_network(network, config=config)
        if engine is None:
            return 0
        with open(path, "wb") as f:
            f.write(memoryview(engine))
        return path.stat().st_size

    class FileWriter(trt.IStreamWriter):
        def __init__(self, f):
            trt.IStreamWriter.__init__(self)
            self.f = f

        def write(self, data) -> int:
            return self.f.write(data)

    trt_config = config(builder, net)  # polygraphy's config loader, as engine_bytes_from_network calls it
    with open(path, "wb") as f:
        ok = builder.build_serialized_network_to_stream(net, trt_config, FileWriter(f))
    return path.stat().st_size if ok else 0


def layers_before_passes(ptrt, ctx: StageContext, strongly_typed: bool) -> dict | None:
    """The exported ONNX as TensorRT parses it, before any graph pass: the report sets its layer and
    shape-layer counts beside the built network's, so what shape folding bought is visible."""
    if "export" not in ctx.inputs:
        return None
    src = ctx.inputs.export.folder
    size = weight_file_bytes(src)
    if size > BEFORE_PASSES_LIMIT:  # a second parse of a big model costs its weights again in time
        return {"skipped": f"the exported graph is {size / 2**30:.1f} GiB"}
    try:
        _, network, _ = ptrt.network_from_onnx_path(str(src / MODEL), strongly_typed=strongly_typed)
    except Exception as e:  # informational only: the exported graph may need a pass to parse at all
        return {"error": str(e).splitlines()[0][:200] if str(e) else type(e).__name__}
    layers = network_layers(network)
    return {"layers": len(layers), "shape_layers": shape_layer_count(layers)}


def _progress_monitor(trt: Any) -> Any:
    """The builder's phases on the live progress line, and its cancellation: step_complete returning
    False cancels the build (TensorRT's IProgressMonitor contract), which is how SIGINT/SIGTERM stop
    a build promptly. None where the backend has no progress monitor."""
    from trtforge.processes.progress import active

    progress = active()
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class BuilderPhases(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}
            self.first = True

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if self.first:  # inside the native build: the signal tests' point
                self.first = False
                checkpoint("work:build")
            self.steps[phase_name] = num_steps
            if progress is not None:
                progress.phase(phase_name)

        def step_complete(self, phase_name: str, step: int) -> bool:
            if progress is not None:
                progress.phase(f"{phase_name} {step + 1}/{self.steps.get(phase_name, '?')}")
            return interrupts.received() is None  # False: cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self.steps.pop(phase_name, None)

    return BuilderPhases()


def io_bindings(network) -> dict:
    def one(t):
        return {"name": t.name, "shape": list(t.shape), "dtype": str(t.dtype).split(".")[-1]}

    return {
        "inputs": [one(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [one(network.get_output(i)) for i in range(network.num_outputs)],
    }


def _last_error(log_path: Path) -> str:
    try:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if re.search(r"\[E\]|ERROR", ln)]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def _parse_error(e: Exception, log_path: Path, module: str) -> BuildError:
    text = _last_error(log_path) or str(e)
    m = re.search(r"node[^\n]*?\b(?:name:?\s*|')([\w./:-]+)", text)
    op = re.search(r"(?:op(?:_type)?|operator)[: ]+'?(\w+)", text, re.I)
    what = []
    if m:
        what.append(f"node '{m.group(1)}'")
    if op:
        what.append(f"op {op.group(1)}")
    return BuildError(
        f"the TensorRT ONNX parser rejected the graph{' at ' + ', '.join(what) if what else ''}: {text}",
        where=f"modules.{module}",
        module=module,
        hint="rewrite that op with a graph pass or in the module",
    )
