"""trtforge: an offline compiler driver that turns PyTorch modules into verified TensorRT engines.

The Python API (the CLI calls the same functions; each imports its machinery only when called, so
`import trtforge` stays cheap):

    import trtforge
    manifest = trtforge.load_manifest("engines.toml")
    outcome = trtforge.build(manifest, modules=["vit"])        # BuildOutcome
    outcome.ok, outcome.exit_code, outcome.report
    for r in outcome.results:                                  # ModuleResult, manifest order
        print(r.name, {s: st.state for s, st in r.stages.items()}, r.published)
    for v in trtforge.explain(manifest):                       # Verdict: module, stage, state, changes
        print(v.module, v.stage, v.state, v.changes)           # str(v): the line `trtforge explain` prints
    trtforge.inspect("vit:build", manifest).as_json()          # or an engine file's path
    trtforge.export_onnx("vit", "graph_passes", "vit-onnx/", manifest)   # standalone ONNX files

User mistakes raise trtforge.errors.TrtforgeError subclasses (one line: `e.one_line()`); a module
that fails verification does not raise: its `error` is set and nothing of it is published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names for the signatures only: `import trtforge` imports none of this
    from trtforge.driver.api import BuildOutcome
    from trtforge.driver.explain import Verdict
    from trtforge.driver.inspect import Inspection
    from trtforge.driver.results import ModuleResult
    from trtforge.manifest import Manifest
    from trtforge.processes.progress import Progress

from trtforge.artifacts import VERSION as __version__

__all__ = ["__version__", "build", "explain", "export_onnx", "inspect", "load_manifest"]


def load_manifest(path="engines.toml"):
    """engines.toml, validated, every default resolved (trtforge.manifest.Manifest)."""
    from trtforge.manifest import load_manifest as load

    return load(path)


def build(
    manifest: Manifest | str | Path = "engines.toml",
    modules: Iterable[str] = (),
    *,
    targets: Iterable[str] = (),
    backend: str | None = None,
    cache_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    jobs: int = 1,
    require_engine_check: bool = False,
    require_target: bool = False,
    allow_foreign_files: bool = False,
    force_from: str | None = None,
    remote: bool = True,
    remote_read_only: bool = False,
    require_remote: bool = False,
    from_cache: bool = False,
    max_memory: int | str | None = None,
    until: str | None = None,
    overlap: bool = False,
    progress: Progress | None = None,
    on_result: Callable[[ModuleResult], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> BuildOutcome:
    """Export, rewrite, keep FP32 islands, build, verify and publish `modules` (all by default) for
    `targets` ([targets.NAME] tables; all by default). `force_from`: a stage name to re-run from;
    `backend`: "tensorrt" or "tensorrt-rtx" over the manifest's; `output_dir` replaces the
    manifest's; `jobs`: modules built at once; `remote*`: the [cache] remote (docs/farm.md);
    `from_cache`: assemble engines/ from the cache, run nothing; `max_memory`: each stage's memory
    budget (bytes or "16G"); `until`: run only the stages every target shares; `overlap`: verify's ONNX check
    while the engine builds, where the machine has room (faster, higher peak RSS); `on_result` / `on_note` see each
    module's result and each note as soon as they are known. The options are the fields of
    trtforge.driver.request.BuildRequest (documented there), which this builds once and the driver
    passes whole; a user mistake raises a TrtforgeError."""
    from trtforge.driver.api import build as run
    from trtforge.driver.request import FIELDS, BuildRequest

    options = {name: value for name, value in locals().items() if name in FIELDS}
    request = BuildRequest(**options)
    return run(manifest, request, progress=progress, on_result=on_result, on_note=on_note)


def explain(
    manifest: Manifest | str | Path = "engines.toml",
    modules: Iterable[str] = (),
    *,
    backend: str | None = None,
    cache_dir: str | Path | None = None,
    targets: Iterable[str] = (),
) -> list[Verdict]:
    """Per module and stage, a Verdict (a dataclass: module, stage, state "up to date" | "build" |
    "rebuild" | "cannot plan" | "note", changes: the key fields that changed, text: the line
    `trtforge explain` prints, also its str()). A dry run: nothing is built. Before 0.2 this
    returned the lines themselves: `[str(v) for v in explain(...)]` gives them. With [targets.NAME]
    tables, every target (or those in `targets`) under the keys the build computes for it."""
    from trtforge.driver.api import explain_verdicts

    return explain_verdicts(manifest, modules, backend=backend, cache_dir=cache_dir, targets=targets)


def inspect(
    target: str | Path,
    manifest: Manifest | str | Path = "engines.toml",
    *,
    cache_dir: str | Path | None = None,
    on_target: str | None = None,
) -> Inspection:
    """An engine file (its published sidecar, plus layers and rules from the cache where it still
    holds the build) or "module[:stage]" (the module's last record of that stage; build by
    default) described, as a trtforge.driver.inspect.Inspection (`render()` for text,
    `as_json()`). `on_target`: the engine published for that [targets.NAME] target;
    `cache_dir`: over $TRTFORGE_CACHE_DIR and the manifest's."""
    from trtforge.driver.api import inspect as run

    return run(target, manifest, cache_dir=cache_dir, on_target=on_target)


def export_onnx(
    module: str,
    stage: str,
    out_dir: str | Path,
    manifest: Manifest | str | Path = "engines.toml",
    *,
    cache_dir: str | Path | None = None,
) -> list[Path]:
    """The module's last `stage` ONNX (+ external data) copied out of the cache into `out_dir` as
    standalone files that onnx.load, polygraphy and Netron open; the paths written."""
    from trtforge.driver.api import export_onnx as run

    return run(module, stage, out_dir, manifest, cache_dir=cache_dir)
