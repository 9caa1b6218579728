"""The layers of the house, enforced (docs/architecture.md draws them). Each top-level unit of
trtforge (a package, or one of the few modules left at the top) has a layer:

  0 core       errors, artifacts: import nothing of trtforge
  1 shared     backends, stage, user_code, manifest, schema, cache, data, graphs, processes, engines_folder
  2 stages     export, graph_passes, precision_rules, builder, verify: never each other
  3 pipelines  runs modules as export builds them and as published
  4 driver     the stage order, a module's life, publishing, reports, `trtforge verify`
  5 tools      cli, the API facade (__init__)
  6 entry      __main__ (`python -m trtforge` runs the CLI)

A unit imports only units of a lower layer, or, among shared ones, another shared unit; the units
import each other without a cycle. Heavy libraries stay where they belong (torch in export and
pipelines; TensorRT and polygraphy in builder, verify and backends; onnxruntime in the graph
evaluator and verify). Imports inside functions count: a late import is still a dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "trtforge"
LAYERS = {
    "core": (0, {"errors", "artifacts"}),
    "shared": (
        1,
        {
            "backends",
            "stage",
            "user_code",
            "manifest",
            "schema",
            "cache",
            "data",
            "graphs",
            "processes",
            "engines_folder",
        },
    ),
    "stages": (2, {"export", "graph_passes", "precision_rules", "builder", "verify"}),
    "pipelines": (3, {"pipelines"}),
    "driver": (4, {"driver"}),
    "tools": (5, {"cli", "__init__"}),
    "entry": (6, {"__main__"}),  # `python -m trtforge`: the CLI
}
RANK = {unit: rank for rank, units in LAYERS.values() for unit in units}
HEAVY = {  # library -> the units (or dotted modules) that may import it
    "torch": {"export", "pipelines"},
    "tensorrt": {"builder", "verify", "backends"},
    "tensorrt_rtx": {"builder", "verify", "backends"},
    "polygraphy": {"builder", "verify", "backends"},
    "onnxruntime": {"graphs.evaluate", "verify"},
}


def _unit(path: Path) -> str:
    """trtforge/<unit>/... or trtforge/<unit>.py"""
    return path.relative_to(PKG).parts[0].removesuffix(".py")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PKG).with_suffix("").parts).removesuffix(".__init__")


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
    """(importing unit, imported unit or library, where, importing module) over the whole package."""
    units = {_unit(p) for p in PKG.rglob("*.py")}
    for path in sorted(PKG.rglob("*.py")):
        me = _unit(path)
        for name, line in _imports(path):
            parts = name.split(".")
            where = f"{path.relative_to(PKG.parent)}:{line}"
            if parts[0] == "trtforge" and len(parts) > 1 and parts[1] in units and parts[1] != me:
                yield me, parts[1], where, _module(path)
            elif parts[0] in HEAVY:
                yield me, parts[0], where, _module(path)


def _allowed(me: str, other: str) -> bool:
    if RANK[other] < RANK[me]:
        return True
    return RANK[me] == RANK[other] == LAYERS["shared"][0]


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in PKG.rglob("*.py")}
    assert units <= set(RANK), f"units without a layer: {sorted(units - set(RANK))}"
    loose = sorted(p.name for p in PKG.glob("*.py"))
    assert len(loose) <= 7, f"modules loose at the top of the package: {loose}"


def test_no_unit_imports_a_layer_above_it_and_no_stage_imports_another():
    bad = [
        f"{where}: {me} (layer {RANK[me]}) imports {other} (layer {RANK[other]})"
        for me, other, where, _ in _edges()
        if other not in HEAVY and not _allowed(me, other)
    ]
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_units_import_each_other_without_a_cycle():
    graph: dict[str, set[str]] = {}
    for me, other, _, _ in _edges():
        if other not in HEAVY:
            graph.setdefault(me, set()).add(other)
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(unit: str, path: list[str]) -> list[str] | None:
        state[unit] = 1
        for nxt in sorted(graph.get(unit, ())):
            if state.get(nxt) == 1:
                return path + [unit, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [unit])):
                return cycle
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state:
            cycle = visit(unit, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle[cycle.index(cycle[-1]) :])


def _module_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (a `from pkg import name` counts as the
    submodule `pkg.name` where that is one, else as `pkg`; the package a module sits in is loaded
    anyway and is not counted)."""
    files = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for me, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [
                    f"{node.module}.{a.name}"
                    if f"{node.module}.{a.name}".removeprefix("trtforge.") in files
                    else node.module
                    for a in node.names
                ]
            else:
                continue
            for name in names:
                if not name.startswith("trtforge."):
                    continue
                target = name.removeprefix("trtforge.")
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != me and not me.startswith(target + "."):
                    graph.setdefault(me, set()).add(target)
    return graph


def test_modules_import_each_other_without_a_cycle():
    """Not only the units: no module is imported, through any chain, by what it imports."""
    graph = _module_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                cycles.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert not cycles, f"modules importing each other: {cycles}"


def test_heavy_libraries_stay_fenced():
    def fenced(lib: str, unit: str, module: str) -> bool:
        return any(unit == allowed or module == allowed or module.startswith(allowed + ".") for allowed in HEAVY[lib])

    bad = [
        f"{where}: {mod} imports {lib}" for me, lib, where, mod in _edges() if lib in HEAVY and not fenced(lib, me, mod)
    ]
    assert not bad, "heavy imports outside their fence:\n" + "\n".join(bad)


def test_the_checker_sees_a_violation():
    """The rules above are not vacuous: a stage importing another is reported."""
    assert not _allowed("verify", "builder") and not _allowed("manifest", "export")
    assert not _allowed("errors", "cache") and not _allowed("driver", "cli")
    assert _allowed("driver", "export") and _allowed("cli", "driver") and _allowed("export", "graphs")
    edges = list(_edges())
    assert any(me == "driver" and other == "export" for me, other, _, _ in edges)  # the walk finds real imports
    assert any(me == "export" and other == "torch" for me, other, _, _ in edges)


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
