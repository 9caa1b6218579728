"""trtforge: an offline compiler driver that turns PyTorch modules into verified TensorRT engines.

The Python API (the CLI calls the same functions; each imports its machinery only when called, so
`import trtforge` stays cheap):

    import trtforge
    manifest = trtforge.load_manifest("engines.toml")
    outcome = trtforge.build(manifest, modules=["vit"])        # BuildOutcome
    outcome.ok, outcome.exit_code, outcome.report
    for r in outcome.results:                                  # ModuleResult, manifest order
        print(r.name, {s: st.state for s, st in r.stages.items()}, r.published)
    trtforge.explain(manifest)                                 # lines: up to date / what changed
    trtforge.inspect("vit:build", manifest).as_json()          # or an engine file's path
    trtforge.export_onnx("vit", "graph_passes", "vit-onnx/", manifest)   # standalone ONNX files

User mistakes raise trtforge.errors.TrtforgeError subclasses (one line: `e.one_line()`); a module
that fails verification does not raise: its `error` is set and nothing of it is published.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "build", "explain", "export_onnx", "inspect", "load_manifest"]


def load_manifest(path="engines.toml"):
    """engines.toml, validated, every default resolved (trtforge.manifest.Manifest)."""
    from trtforge.manifest import load_manifest as load

    return load(path)


def build(manifest="engines.toml", modules=(), **options):
    """Build, verify and publish; see trtforge.driver.api.build for the options."""
    from trtforge.driver.api import build as run

    return run(manifest, modules, **options)


def explain(manifest="engines.toml", modules=(), **options):
    """Per module and stage: up to date, or the key fields that changed (a dry run)."""
    from trtforge.driver.api import explain as run

    return run(manifest, modules, **options)


def inspect(target, manifest="engines.toml", **options):
    """An engine file or "module[:stage]" described (trtforge.driver.inspect.Inspection)."""
    from trtforge.driver.api import inspect as run

    return run(target, manifest, **options)


def export_onnx(module, stage, out_dir, manifest="engines.toml", **options):
    """A stage's ONNX copied out of the cache as standalone files; the paths written."""
    from trtforge.driver.api import export_onnx as run

    return run(module, stage, out_dir, manifest, **options)
