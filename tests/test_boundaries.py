"""The layers of the house, enforced (docs/architecture.md draws them).

- a stage package (export, graph_passes, precision_rules, build, verify) imports only shared
  modules and itself: never another stage, the driver or a tool;
- a shared module (manifest, errors, stage, backends, tensors, onnx_files, onnx_eval, cache, ...)
  imports only shared modules;
- the driver imports stages, shared modules and the reports it writes; tools (cli, reports,
  predeploy) may import anything;
- heavy libraries stay where they belong (torch in export; TensorRT and polygraphy in build,
  verify and the backend discovery; onnxruntime where ONNX is run).
Imports inside functions count: a late import is still a dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "trtforge"
STAGES = {"export", "graph_passes", "precision_rules", "builder", "verify"}  # packages (the build stage: builder)
DRIVER = "driver"
# pipelines (trtforge/pipelines/): a driver-level package that runs modules as the export stage
# builds them (torch) and as published (onnx_eval); the driver calls it after the modules' verdicts
PIPELINES = "pipelines"
REPORTS = {"report", "report_html"}
# cli_plan: the `trtforge plan` command (a tool like cli)
TOOLS = {"__init__", "cli", "cli_plan", "__main__", "predeploy"} | REPORTS  # __init__: the API facade
HEAVY = {  # library -> the units that may import it
    "torch": {"export", PIPELINES},
    "tensorrt": {"builder", "verify", "backends"},
    "tensorrt_rtx": {"builder", "verify", "backends"},
    "polygraphy": {"builder", "verify", "backends"},
    "onnxruntime": {"onnx_eval", "verify"},
}


def _unit(path: Path) -> str:
    """trtforge/<unit>/... or trtforge/<unit>.py"""
    return path.relative_to(PKG).parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported dotted name, line) for every absolute import in the file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, node.lineno)] + [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return out


def _edges():
    """(importing unit, imported unit or library, where) over the whole package."""
    units = {_unit(p) for p in PKG.rglob("*.py")}
    for path in sorted(PKG.rglob("*.py")):
        me = _unit(path)
        for name, line in _imports(path):
            parts = name.split(".")
            where = f"{path.relative_to(PKG.parent)}:{line}"
            if parts[0] == "trtforge" and len(parts) > 1 and parts[1] in units and parts[1] != me:
                yield me, parts[1], where
            elif parts[0] in HEAVY:
                yield me, parts[0], where


def _allowed(me: str, other: str) -> bool:
    shared = other not in STAGES | TOOLS | {DRIVER, PIPELINES}
    if me in TOOLS:
        return True
    if me == DRIVER:
        return other in STAGES or other in REPORTS or other == PIPELINES or shared
    if me == PIPELINES:
        return other in STAGES or other == DRIVER or shared
    return shared  # a stage or a shared module


def test_no_stage_imports_another_stage_and_shared_code_imports_no_stage():
    bad = [
        f"{where}: {me} imports {other}"
        for me, other, where in _edges()
        if other not in HEAVY and not _allowed(me, other)
    ]
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_heavy_libraries_stay_fenced():
    bad = [f"{where}: {me} imports {lib}" for me, lib, where in _edges() if lib in HEAVY and me not in HEAVY[lib]]
    assert not bad, "heavy imports outside their fence:\n" + "\n".join(bad)


def test_the_checker_sees_a_violation():
    """The rules above are not vacuous: a stage importing another is reported."""
    assert not _allowed("verify", "builder") and not _allowed("manifest", "export")
    assert _allowed("driver", "export") and _allowed("cli", "driver") and _allowed("export", "onnx_files")
    edges = list(_edges())
    assert any(me == "driver" and other == "export" for me, other, _ in edges)  # the walk finds real imports
    assert any(me == "export" and other == "torch" for me, other, _ in edges)


@pytest.mark.parametrize("armed", [False, True])
def test_fault_hooks_fire_only_behind_their_switch(armed):
    """TRTFORGE_TEST_KILL_AT alone does nothing: only with TRTFORGE_TEST_HOOKS=1 does a process
    kill itself at the named point."""
    env = {k: v for k, v in os.environ.items() if k != "TRTFORGE_TEST_HOOKS"}
    env["TRTFORGE_TEST_KILL_AT"] = "here"
    if armed:
        env["TRTFORGE_TEST_HOOKS"] = "1"
    code = "from trtforge.cache.testhooks import checkpoint; checkpoint('here'); print('alive')"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    if armed:
        assert r.returncode == -9 and "alive" not in r.stdout
    else:
        assert r.returncode == 0 and r.stdout.strip() == "alive"
