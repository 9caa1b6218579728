"""Which TensorRT family builds an engine, detected without importing it.

polygraphy reads POLYGRAPHY_USE_TENSORRT_RTX once, when first imported, so `select()` sets it
before any polygraphy import and refuses to switch afterwards in the same process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from trtforge.errors import BackendMissingError, BuildError

RTX, TRT = "tensorrt-rtx", "tensorrt"
MODULE = {RTX: "tensorrt_rtx", TRT: "tensorrt"}
DISTS = {RTX: ("tensorrt-rtx", "tensorrt_rtx"), TRT: ("tensorrt", "tensorrt-cu12", "tensorrt-cu13")}
EXTRA = {RTX: "rtx", TRT: "tensorrt"}
# TensorRT-RTX engines run on these (its default portable set, per NVIDIA's support matrix);
# Hopper (9.0) is not among them even though engines build there.
RTX_DEFAULT_CCS = ("8.0", "8.6", "8.9", "12.0")
DRIVER_MARKS = ("/proc/driver/nvidia/gpus", "/dev/nvidiactl")


def installed(backend: str) -> bool:
    try:
        return importlib.util.find_spec(MODULE[backend]) is not None
    except (ImportError, ValueError):
        return False


def version(backend: str) -> str | None:
    for dist in DISTS[backend]:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def library_files(backend: str) -> list[Path]:
    """The shared libraries that do the building: their digests go into the engine key."""
    spec = importlib.util.find_spec(MODULE[backend])
    if spec is None or spec.origin is None:
        return []
    site = Path(spec.origin).parent.parent
    pattern = re.compile(r"(libnvinfer|libtensorrt|tensorrt_rtx|tensorrt_bindings|nvinfer).*\.so", re.I)
    return sorted(
        p
        for d in site.glob(f"{MODULE[backend]}*")
        if d.is_dir()
        for p in d.rglob("*.so*")
        if pattern.search(p.name) and p.is_file()
    )


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: str  # "9.0"


def gpus() -> list[Gpu]:
    """NVIDIA GPUs on this machine; [] when there are none (cheap: no CUDA import)."""
    # /proc/driver/nvidia is absent under some sandboxes (gVisor) that still expose the device nodes
    if not any(Path(p).exists() for p in DRIVER_MARKS) and not os.environ.get("TRTFORGE_ASSUME_GPU"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [Gpu(*[s.strip() for s in line.split(",", 1)]) for line in out.strip().splitlines() if "," in line]


def resolve(requested: str, module: str) -> str:
    """auto: TensorRT when it and a GPU are present, else TensorRT-RTX (builds on the CPU)."""
    where = f"modules.{module}.build.backend"
    if requested == "auto":
        if installed(TRT) and gpus():
            return TRT
        if installed(RTX):
            return RTX
        raise BackendMissingError(
            "no TensorRT backend is installed",
            where=where,
            module=module,
            hint="pip install 'trtforge[rtx]' (TensorRT-RTX builds on any machine)",
        )
    if not installed(requested):
        raise BackendMissingError(
            f"backend '{requested}' is not installed",
            where=where,
            module=module,
            hint=f"pip install 'trtforge[{EXTRA[requested]}]'",
        )
    if requested == TRT and not gpus():
        raise BuildError(
            "TensorRT builds need the target GPU and none is visible",
            where=where,
            module=module,
            hint="use backend = 'tensorrt-rtx' to build ahead of time on the CPU",
        )
    return requested


def target(backend: str, ccs: tuple[str, ...], gpu_model: str = "") -> dict:
    """What the engine is built for: its folder name under engines/ and the facts for the key.
    `gpu_model` (a [targets] table's gpu): the first GPU whose name contains it, else the first."""
    if backend == RTX:
        chosen = tuple(ccs) or RTX_DEFAULT_CCS
        name = "rtx-" + "-".join("sm" + c.replace(".", "") for c in chosen)
        return {"name": name, "compute_capabilities": list(chosen), "explicit": bool(ccs)}
    found = gpus()
    gpu = next((g for g in found if gpu_model and gpu_model.lower() in g.name.lower()), found[0])
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.name.lower()).strip("-")
    return {
        "name": f"trt-{slug}-sm{gpu.compute_capability.replace('.', '')}",
        "gpu": gpu.name,
        "compute_capabilities": [gpu.compute_capability],
    }


def select(backend: str) -> None:
    """Point polygraphy at `backend`'s TensorRT family. polygraphy reads the choice when its
    config is imported and binds it when its TensorRT backend modules are imported: until the
    latter, a process that imported polygraphy for something else (its ONNX tools) can still
    switch; after it, the family is fixed for the process."""
    want = "1" if backend == RTX else "0"
    if "polygraphy" in sys.modules:
        from polygraphy import config

        if bool(config.USE_TENSORRT_RTX) != (want == "1"):
            if _trt_bound():
                raise BuildError(
                    f"this process already uses the other TensorRT family; cannot build with {backend}",
                    hint="build one backend per process",
                )
            config.USE_TENSORRT_RTX = want == "1"
    os.environ["POLYGRAPHY_USE_TENSORRT_RTX"] = want


def _trt_bound() -> bool:
    """Whether polygraphy has already bound a TensorRT module for this process."""
    return any(
        name == "polygraphy.backend.trt"
        or name.startswith("polygraphy.backend.trt.")
        or name.startswith("polygraphy.backend.tensorrt_rtx")
        for name in list(sys.modules)
    )


def platform_key() -> dict:
    return {"os": platform.system(), "machine": platform.machine()}
