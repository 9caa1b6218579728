"""Build stage: parse the precision-realised ONNX with TensorRT or TensorRT-RTX through polygraphy,
check the planned precisions in the parsed network, build and capture the builder log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtforge import backends as be
from trtforge.cache import digest_file
from trtforge.data.dims import profiles_key
from trtforge.manifest import ModuleSpec, settings_dict
from trtforge.stage import Stage, StageContext, tool_versions


@dataclass(frozen=True)
class BuildStage(Stage):
    name: str = "build"
    version: str = "build-3"
    backend_override: str | None = None
    gpu: str = ""  # a TensorRT target's GPU model ([targets.NAME] gpu)
    target_name: str = ""  # a [targets.NAME] name; "" for the default target
    # keep a timing cache per target (builder/timing.py): [targets.NAME] targets only, so a manifest
    # without targets builds, stores and publishes exactly what it did before targets existed
    timing_cache: bool = False

    def timing_target(self, module: ModuleSpec) -> str | None:
        """The name the target's timing cache is kept under; None when it is off."""
        if not self.timing_cache:
            return None
        backend = self.backend(module)
        return self.target_name or self._target(backend, module)["name"]

    def backend(self, module: ModuleSpec) -> str:
        return be.resolve(self.backend_override or module.build.backend, module.name)

    def _target(self, backend: str, module: ModuleSpec) -> dict:
        ccs = module.build.rtx_compute_capabilities
        return be.target(backend, ccs, self.gpu) if self.gpu else be.target(backend, ccs)

    def key_material(self, module: ModuleSpec, root: Path) -> dict:
        backend = self.backend(module)
        # the optimization profiles are builder options; static modules keep their key unchanged
        return ({"profiles": profiles_key(module.profiles)} if module.profiles else {}) | {
            "backend": backend,
            "backend_version": be.version(backend),
            "libraries": {p.name: digest_file(p) for p in be.library_files(backend)},
            "target": self._target(backend, module),
            "options": {**settings_dict(module.build), "backend": backend},
            "realizer": module.precision.realizer,
            "platform": be.platform_key(),
            "tools": tool_versions("polygraphy", "onnx"),
            "plugins": [],
            # the CUDA runtime the builder links against picks kernels too (None where absent)
            "cuda": tool_versions("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime"),
        }

    def run(self, ctx: StageContext, workdir: Path) -> dict:
        from trtforge.builder.engine import build_engine

        backend = self.backend(ctx.module)
        return build_engine(ctx, workdir, backend, self._target(backend, ctx.module))
