"""One real build of the repo's example manifest, shared by the end-to-end modules (it costs ~10 s)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, built_once, run_cli


def _build_examples(root):
    shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "engines.toml", root / "engines.toml")
    first = run_cli("build", "engines.toml", "--json", cwd=root)
    assert first.returncode == 0, first.stderr
    (root / "first-build.json").write_text(first.stdout)


@pytest.fixture(scope="session")
def built_examples(tmp_path_factory):
    """(project folder, the build's JSON report), built once for the session (every xdist worker
    shares it). Tests may read it and run more commands in it, but must not edit engines.toml or
    the examples (write another manifest beside it instead)."""
    root = built_once(tmp_path_factory, "examples", _build_examples)
    return root, json.loads((root / "first-build.json").read_text())


def module_report(report: dict, name: str) -> dict:
    return next(m for m in report["modules"] if m["name"] == name)
