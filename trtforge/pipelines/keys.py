"""A pipeline check's cache key: the keys of its modules' final artifacts (precision_rules graph,
engine, verify verdict), the pipeline's resolved table (runner, runner_args, inputs, outputs), the
digests of the runner's source files and of the data files its inputs read, and the tool versions.
The build (driver/pipelines.py) and `explain` compute it from here."""

from __future__ import annotations

from pathlib import Path

from trtforge.cache import digest_file
from trtforge.cache.imports import display, module_files
from trtforge.manifest.pipelines import PipelineSpec
from trtforge.stage import tool_versions

STAGE = "pipeline"
VERSION = "pipeline-2"  # 2: valid on outputs and in the per-call series; the modules' broken-reference rule
FINAL = "precision_rules"  # the graph published engines are built from
KEYED_STAGES = ("precision_rules", "build", "verify")


def runner_sources(spec: PipelineSpec, root: Path) -> list[Path]:
    """The runner's module file, its packages' __init__.py and the .py files beside it."""
    files = module_files(spec.runner.split(":")[0], root)
    if not files:
        return []
    return sorted({*files, *(p for p in files[-1].parent.glob("*.py") if p.is_file())})


def key_document(spec: PipelineSpec, root: Path, records: dict[str, dict]) -> dict:
    """`records`: module -> {stage: record key} of the stages whose output the pipeline trusts."""
    return {
        "stage": STAGE,
        "version": VERSION,
        "pipeline": spec.as_key(),
        "modules": records,
        "runner_code": {display(p, root): digest_file(p) for p in runner_sources(spec, root)},
        # inputs read from files (file = "latents.npy"): by content
        "data": {f: digest_file(root / f) for f in sorted(_data_files(spec)) if (root / f).is_file()},
        "tools": tool_versions("torch", "numpy", "onnx", "onnxruntime", "diffusers", "transformers"),
    }


def _data_files(spec: PipelineSpec) -> set[str]:
    from trtforge.data.sources import data_file

    return {f for f in (data_file(i.source) for i in spec.inputs) if f}
