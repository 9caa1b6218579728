"""The manifest package's house rules (issue 26): fields declared once, no private name imported
across files (inside the package or by its users), no import cycle, no file over 500 lines."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from tests.conftest import REPO
from trtforge.errors import ManifestError
from trtforge.manifest import checks as c
from trtforge.manifest.fields import key_material, setting, settings_dict, spec_table
from trtforge.manifest.settings import BUILD, TOLERANCE, VERIFY, BuildSettings, VerifySettings

PKG = REPO / "trtforge" / "manifest"
PACKAGE = "trtforge.manifest"


@dataclasses.dataclass(frozen=True)
class Toy:
    """A settings class declared the one way: each field once."""

    name: str = setting()
    level: int = setting(c.int_in(0, 3), 1, doc="How hard.")
    tags: tuple[str, ...] = setting(c.str_list, (), when_set=True)
    note: str = setting(c.string, "", keyed=False)
    parts: tuple[str, ...] = setting(c.str_list, ("a",), key=lambda t: list(t.parts))


def test_one_declaration_gives_the_table_the_dataclass_and_the_key_material():
    table = spec_table(Toy)
    assert list(table) == ["level", "tags", "note", "parts"]  # declaration order; `name` has no checker
    assert [d for _, d in table.values()] == [1, (), "", ("a",)]
    assert table["level"][0].schema == {"type": "integer", "minimum": 0, "maximum": 3}
    with pytest.raises(ManifestError, match="x.level"):
        table["level"][0](7, "x.level")
    toy = Toy(name="t")
    assert (toy.level, toy.tags, toy.parts) == (1, (), ("a",))  # the dataclass defaults are the table's
    assert key_material(toy) == {"name": "t", "level": 1, "parts": ["a"]}  # tags unset: left out; note: never
    assert key_material(Toy(name="t", tags=("x",), note="n")) == {
        "name": "t",
        "level": 1,
        "tags": ("x",),
        "parts": ["a"],
    }
    assert settings_dict(toy) == {"name": "t", "level": 1, "tags": (), "note": "", "parts": ("a",)}


def test_the_stage_tables_are_the_settings_declarations():
    assert list(BUILD) == [f.name for f in dataclasses.fields(BuildSettings)]
    assert list(VERIFY) == [f.name for f in dataclasses.fields(VerifySettings)]
    assert list(TOLERANCE) == ["atol", "rtol", "max_outside", "min_cosine"]  # VerifySettings' first four
    assert BuildSettings() == BuildSettings(*(d for _, d in BUILD.values()))


def _py_files() -> list[Path]:
    out = []
    for top in ("trtforge", "tests", "bench", "examples"):
        out += [p for p in (REPO / top).rglob("*.py") if ".venv" not in p.parts]
    return sorted(out)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    return (REPO / rel).with_suffix(".py").is_file() or (REPO / rel / "__init__.py").is_file()


def _private_uses(path: Path) -> list[str]:
    """Private names of trtforge.manifest's modules this file imports or reads from another file."""
    me = _module_name(path) if path.is_relative_to(REPO) else path.stem
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    tree = ast.parse(path.read_text(), str(path))
    aliases = set()  # local names bound to a module of the package
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith(PACKAGE):
            for a in node.names:
                if _is_module(f"{node.module}.{a.name}"):
                    aliases.add(a.asname or a.name)
                elif a.name.startswith("_") and node.module != me:
                    out.append(f"{where}:{node.lineno}: {node.module}.{a.name}")
        elif isinstance(node, ast.Import):
            aliases.update(a.asname for a in node.names if a.name.startswith(PACKAGE) and a.asname)
        elif isinstance(node, ast.ImportFrom) and node.module == "trtforge" and node.level == 0:
            aliases.update(a.asname or a.name for a in node.names if a.name == "manifest")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                out.append(f"{where}:{node.lineno}: {node.value.id}.{node.attr}")
    return out


def test_no_file_imports_a_private_name_of_the_manifest_package():
    bad = [use for path in _py_files() for use in _private_uses(path)]
    assert not bad, "private names used across files:\n" + "\n".join(bad)


def test_the_private_name_check_sees_a_violation(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from trtforge.manifest.checks import _hidden\nfrom trtforge import manifest as m\nm._section\n")
    assert [use.split(": ")[1] for use in _private_uses(probe)] == ["trtforge.manifest.checks._hidden", "m._section"]


def _package_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (at any depth: a late import is still an edge)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        me = _module_name(path)
        edges = graph.setdefault(me, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    edges.add(sub if _is_module(sub) else node.module)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        edges.discard(me)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state:
                found = visit(nxt, [*path, node])
                if found:
                    return found
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return []


def test_the_package_has_no_import_cycle():
    graph = _package_graph()
    assert graph[PACKAGE] >= {f"{PACKAGE}.loader", f"{PACKAGE}.settings"}  # the walk sees real edges
    assert _cycle({"a": {"b"}, "b": {"a"}})  # and the search finds a cycle where there is one
    assert not _cycle(graph), " -> ".join(_cycle(graph))


def test_no_file_of_the_package_is_over_500_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PKG.rglob("*.py")}
    assert max(sizes.values()) <= 500, sizes


def test_every_setting_is_documented_once_and_the_schema_shows_it():
    """A field's doc is written in its declaration; the shipped schema's hover text comes from it."""
    from trtforge.manifest.fields import docs
    from trtforge.manifest.settings import EXPORT, PRECISION, ExportSettings, PrecisionSettings
    from trtforge.schema import generate

    defaults = generate()["properties"]["defaults"]["properties"]
    for name, cls, table in (
        ("export", ExportSettings, EXPORT),
        ("build", BuildSettings, BUILD),
        ("precision", PrecisionSettings, PRECISION),
        ("verify", VerifySettings, VERIFY),
    ):
        assert set(docs(cls)) == set(table), name  # every key the loader takes says what it means
        props = defaults[name]["properties"]
        assert {k: props[k]["description"] for k in table} == docs(cls), name
