"""Keys cover every change of code that can change an artifact, and `explain` names it:

- a module the factory imports from elsewhere in the project (not beside the factory);
- a module imported from a folder outside the project (on PYTHONPATH);
- a file inside an installed distribution (an edit in site-packages: its RECORD no longer matches);
- a user pass's source, and a module that pass imports.

Before, only the .py files beside the factory and `depends` were keyed: every edit here left
`explain` saying "up to date" and the old artifact in use. `build --force [--stage S]` re-runs.
The installed distribution is installed by hand into a folder on PYTHONPATH (a dist-info folder
with METADATA and RECORD, as an installer writes them), so the test never touches the venv."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.cache.conftest import STAGES, build, states
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # real exports and engine builds

FACTORY = """
import torch
from torch import nn

import outside_helper
from instdep import core
from tinylib import act


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(8, 4)

    def forward(self, x):
        return self.lin(x) * act.GAIN * outside_helper.GAIN * core.GAIN


def make_net():
    return Net()
"""

PASS = '''
from tinylib.pass_helper import PREFIX
from trtforge.graph_passes.base import GraphPass


class PrefixNamesPass(GraphPass):
    """Renames every node (a restructuring pass: outputs stay identical)."""

    name = "prefix_names"

    def apply(self, graph, ctx):
        for node in graph.nodes:
            node.name = PREFIX + node.name
        return True
'''

MANIFEST = """
[defaults]
precision.rules = []

[modules.net]
factory = "netmods.net:make_net"
inputs.x = { shape = [2, 8], dtype = "float16" }
outputs = ["y"]
passes = [{ name = "tinylib.passes:PrefixNamesPass" }, { name = "cleanup" }, { name = "toposort" }]
"""


def _install(site: Path, name: str, files: dict[str, str]) -> None:
    """A distribution installed as an installer does it: files, then dist-info with RECORD."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    files = {**files, f"{info.name}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"}
    lines = []
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"{rel},sha256={digest},{len(text.encode())}")
    (info / "RECORD").write_text("\n".join([*lines, f"{info.name}/RECORD,,"]) + "\n")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    """One project for both tests: the second starts where the first left it (its first build is
    then a cache hit), and each passes alone too."""
    tmp_path = tmp_path_factory.mktemp("code_keys")
    root = tmp_path / "proj"
    for rel, text in {
        "netmods/__init__.py": "",
        "netmods/net.py": FACTORY,
        "tinylib/__init__.py": "",
        "tinylib/act.py": "GAIN = 1.0\n",
        "tinylib/passes.py": PASS,
        "tinylib/pass_helper.py": 'PREFIX = "a_"\n',
        "engines.toml": MANIFEST,
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    outside, site = tmp_path / "outside", tmp_path / "site"
    outside.mkdir()
    (outside / "outside_helper.py").write_text("GAIN = 1.0\n")
    _install(site, "instdep", {"instdep/__init__.py": "", "instdep/core.py": "GAIN = 1.0\n"})
    path = os.pathsep.join(filter(None, [str(site), str(outside), os.environ.get("PYTHONPATH")]))
    return root, {"PYTHONPATH": path}


def _explain(root: Path, env: dict) -> dict:
    r = run_cli("explain", cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    return {ln.split(":")[0].split()[1]: ln.split(":", 1)[1].strip() for ln in r.stdout.splitlines()}


def _reference(root: Path) -> np.ndarray:
    (folder,) = [p for p in (root / "engines").iterdir() if p.is_dir()]
    with np.load(folder / "net.reference.npz") as f:
        return f["y"]


def _stage_model(root: Path, stage: str) -> onnx.ModelProto:
    cache = root / ".trtforge-cache"
    key = json.loads((cache / "index" / "net" / f"{stage}.json").read_text())["key"]
    return onnx.load(str(cache / "views" / key / "model.onnx"), load_external_data=False)


def test_code_edits_anywhere_change_the_key(project):
    root, env = project
    proc, _ = build(root, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(v.startswith("up to date") for v in _explain(root, env).values())
    ref = _reference(root)

    edits = [
        (root / "tinylib" / "act.py", "material.imports.sources.tinylib/act.py: ", 2.0),
        (
            root.parent / "outside" / "outside_helper.py",
            "material.imports.sources.sys.path:outside_helper.py: ",  # named by its sys.path entry, not its path
            3.0,
        ),
        (
            root.parent / "site" / "instdep" / "core.py",
            "material.imports.dists.instdep.modified.instdep/core.py: <absent> -> ",
            5.0,
        ),
    ]
    # the three edits at once, one rebuild: explain names each file as its own changed key field,
    # and the three gains are distinct primes, so the new reference shows that each new file ran
    for path, _, gain in edits:
        path.write_text(f"GAIN = {gain}\n")
    lines = _explain(root, env)
    assert lines["export"].startswith("will rebuild; changed: "), lines["export"]
    for _, field, _ in edits:
        assert field in lines["export"], lines["export"]
    proc, report = build(root, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert states(report, "net")["export"] == "ok"
    np.testing.assert_allclose(_reference(root), ref * 2.0 * 3.0 * 5.0, rtol=1e-6)  # the new code ran
    assert all(v.startswith("up to date") for v in _explain(root, env).values())


def test_user_pass_source_and_its_imports_change_the_key(project):
    root, env = project
    proc, _ = build(root, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(n.name.startswith("a_") for n in _stage_model(root, "graph_passes").graph.node)

    # a module the pass imports and the pass's own source, edited together (one rebuild): explain
    # names each as its own changed field, and the node names show that both new files ran
    (root / "tinylib" / "pass_helper.py").write_text('PREFIX = "b_"\n')  # imported by the pass
    passes = root / "tinylib" / "passes.py"
    passes.write_text(passes.read_text().replace("PREFIX + node.name", 'PREFIX + "c_" + node.name'))
    lines = _explain(root, env)
    assert lines["export"].startswith("up to date")
    assert "material.imports.sources.tinylib/pass_helper.py: " in lines["graph_passes"], lines["graph_passes"]
    assert "material.pass_sources.tinylib/passes.py: " in lines["graph_passes"], lines["graph_passes"]
    proc, report = build(root, env=env)
    assert proc.returncode == 0 and states(report, "net")["graph_passes"] == "ok", proc.stderr[-3000:]
    assert all(n.name.startswith("b_c_") for n in _stage_model(root, "graph_passes").graph.node)

    # --force: every stage again; --force --stage build: build and verify only
    proc, report = build(root, "--force", env=env)
    assert proc.returncode == 0 and set(states(report, "net").values()) == {"ok"}, proc.stderr[-3000:]
    proc, report = build(root, "--force", "--stage", "build", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert states(report, "net") == {**{s: "cached" for s in STAGES[:3]}, "build": "ok", "verify": "ok"}
    r = run_cli("build", "--stage", "build", cwd=root, env=env)
    assert r.returncode == 2 and "--stage needs --force" in r.stderr
