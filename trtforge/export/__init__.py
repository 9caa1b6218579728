"""Export stage: PyTorch module -> natively FP16 ONNX (+ external weights), example inputs, and the
FP32 PyTorch reference outputs every later check compares against. Only this package imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtforge.artifacts import ExportFiles
from trtforge.cache import digest_file
from trtforge.cache.imports import display, module_files
from trtforge.data.transforms import transforms
from trtforge.errors import ExportError, ManifestError
from trtforge.export import example_data
from trtforge.manifest import ModuleSpec
from trtforge.stage import Stage, StageContext, capture_output, tool_versions


def factory_sources(module: ModuleSpec, root: Path) -> list[Path]:
    """The factory's module file and its packages' __init__.py, found without importing anything.
    Every other file the factory needs is keyed by what the export actually loaded
    (tracks_imports): a helper it imports is in the key, a script that merely sits beside it is
    not (editing one re-ran every export, and a CI checkout without it missed the whole remote)."""
    return sorted(module_files(module.factory.split(":")[0], root))


def declared_dependencies(module: ModuleSpec, root: Path) -> list[Path]:
    files = set(factory_sources(module, root))
    for pattern in module.depends:
        matches = sorted(p for p in root.glob(pattern) if p.is_file())
        if not matches:
            raise ManifestError(
                f"'{pattern}' matches no file under {root}", where=f"modules.{module.name}.depends", module=module.name
            )
        files.update(matches)
    for name in module.factory_paths:  # a checkpoint named by path: its content is part of the key
        path = root / module.factory_args[name]
        if not path.exists():
            raise ManifestError(
                f"factory_args.{name} = '{module.factory_args[name]}': {path} does not exist",
                where=f"modules.{module.name}.factory_paths",
                module=module.name,
                hint="paths in factory_paths are relative to the manifest's folder",
            )
    files.update(module.factory_path_files(root))
    return sorted(files)


def checkpoint_digests(module: ModuleSpec, root: Path) -> dict[str, str]:
    """{file: digest} of the checkpoint: a file, or every file of a folder (recursively, by its
    path inside the folder; names starting with '.' such as a download tool's .cache/ are left
    out). A missing checkpoint is an error naming the field before any stage runs."""
    path = module.checkpoint_path(root)
    where = f"modules.{module.name}.checkpoint"
    if path is None or not path.exists():
        raise ManifestError(
            f"'{module.checkpoint}': {path} does not exist",
            where=where,
            module=module.name,
            hint="a checkpoint is a file or folder (e.g. one save_pretrained wrote), relative to the manifest's folder",
        )
    if path.is_file():
        return {path.name: digest_file(path)}
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise ManifestError(f"'{module.checkpoint}' is an empty folder", where=where, module=module.name)
    return {p.relative_to(path).as_posix(): digest_file(p) for p in files}


def require_torch(module: str) -> None:
    """The first import of torch, in the export stage's own process: without it a user who
    installed `trtforge[rtx]` alone got the child's traceback (`No module named 'torch'`, exit 1)."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise ExportError(
            f"PyTorch cannot be imported ({e})",
            where=f"modules.{module}.factory",
            module=module,
            hint="pip install 'trtforge[torch]' (or the torch build that matches your CUDA)",
        ) from None


@dataclass(frozen=True)
class ExportStage(Stage):
    name: str = "export"
    version: str = "export-2"  # 2: inputs bound by name, outputs named by their keys

    def key_material(self, module: ModuleSpec, root: Path) -> dict:
        deps = {display(p, root): digest_file(p) for p in declared_dependencies(module, root)}
        return {
            # factory_paths only when written: the keys of manifests without it stay as they were
            "module": {
                k: v
                for k, v in module.as_key().items()
                if k in ("factory", "factory_args", "inputs", "outputs", "export", "profiles", "method")
                or (k == "factory_paths" and v)
            },
            # the checkpoint by content (not by path): only when written, like factory_paths
            **({"checkpoint": checkpoint_digests(module, root)} if module.checkpoint else {}),
            "io_transforms": transforms(module.passes, module.name),
            # the seed makes the example inputs; random_inputs adds reference sets made here
            "input_sets": {"seed": module.verify.seed, "random_inputs": module.verify.random_inputs}
            # seeded shapes inside each profile: dynamic modules only (static keys stay as they were)
            | ({"shapes": module.verify.shapes} if module.profiles else {}),
            # data files (inputs' file = ..., verify.input_sets) by content: touching one changes nothing
            **example_data.key_material(module, root),
            "dependencies": deps,
            "tools": tool_versions("torch", "onnx", "onnxscript", "numpy"),
        }

    def tracks_imports(self, module: ModuleSpec) -> bool:
        return True  # the factory's imports, wherever they live, installed or not

    def run(self, ctx: StageContext, workdir: Path) -> dict:
        # the factory's and the exporter's chatter, down to raw writes to fds 1 and 2, goes to
        # export.log in the cache entry, not the terminal
        require_torch(ctx.module.name)
        with capture_output(workdir / ExportFiles.LOG):
            from trtforge.export.torch_export import export_module

            return export_module(ctx.module, ctx.root, workdir)
