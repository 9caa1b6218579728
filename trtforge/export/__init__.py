"""Export stage: PyTorch module -> natively FP16 ONNX (+ external weights), example inputs, and the
FP32 PyTorch reference outputs every later check compares against. Only this package imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtforge.cache import digest_file
from trtforge.errors import ManifestError
from trtforge.io_transforms import transforms
from trtforge.manifest import ModuleSpec
from trtforge.stage import StageContext, capture_output, tool_versions


def factory_sources(module: ModuleSpec, root: Path) -> list[Path]:
    """The factory's module file and the .py files beside it, found without importing anything."""
    import sys

    modname = module.factory.split(":")[0]
    rel = Path(*modname.split("."))
    for base in (root, *map(Path, sys.path)):
        for cand in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
            if cand.is_file():
                return sorted(p for p in cand.parent.glob("*.py") if p.is_file())
    return []  # an installed package without sources beside it: its version is in the key instead


def declared_dependencies(module: ModuleSpec, root: Path) -> list[Path]:
    files = set(factory_sources(module, root))
    for pattern in module.depends:
        matches = sorted(p for p in root.glob(pattern) if p.is_file())
        if not matches:
            raise ManifestError(f"'{pattern}' matches no file under {root}",
                                where=f"modules.{module.name}.depends", module=module.name)
        files.update(matches)
    return sorted(files)


@dataclass(frozen=True)
class ExportStage:
    name: str = "export"
    version: str = "export-1"

    def key_material(self, module: ModuleSpec, root: Path) -> dict:
        deps = {str(p.relative_to(root) if p.is_relative_to(root) else p): digest_file(p)
                for p in declared_dependencies(module, root)}
        return {
            "module": {k: v for k, v in module.as_key().items()
                       if k in ("factory", "factory_args", "inputs", "outputs", "export")},
            "io_transforms": transforms(module.passes, module.name),
            # the seed makes the example inputs; random_inputs adds reference sets made here
            "input_sets": {k: module.verify[k] for k in ("seed", "random_inputs")},
            "dependencies": deps,
            "tools": tool_versions("torch", "onnx", "onnxscript", "numpy"),
        }

    def run(self, ctx: StageContext, workdir: Path) -> dict:
        # the factory's and the exporter's chatter, down to raw writes to fds 1 and 2, goes to
        # export.log in the cache entry, not the terminal
        with capture_output(workdir / "export.log"):
            from trtforge.export.torch_export import export_module

            return export_module(ctx.module, ctx.root, workdir)
