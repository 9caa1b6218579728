"""`trtforge explain` names the key field that changed, and a build then reruns exactly the stages
it said would rebuild."""

from __future__ import annotations

import pytest

from tests.cache.conftest import MLP, STAGES, build, set_manifest, states, write_project
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # real processes building real engines


def _explain(root) -> dict:
    proc = run_cli("explain", "engines.toml", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return {line.split(":")[0].split()[1]: line.split(":", 1)[1].strip() for line in proc.stdout.splitlines()}


def test_explain_names_the_changed_field_and_only_downstream_rebuilds(tmp_path):
    root = write_project(tmp_path / "proj")
    lines = _explain(root)
    assert lines["export"] == "will build (never built with this cache)"
    assert all("upstream" in lines[s] for s in STAGES[1:])
    proc, _ = build(root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(v.startswith("up to date") for v in _explain(root).values())

    # a tolerance: only verify is out of date
    set_manifest(root, atol=0.05)
    lines = _explain(root)
    assert all(lines[s].startswith("up to date") for s in STAGES[:-1])
    assert "material.verify.atol: 0.01 -> 0.05" in lines["verify"]
    proc, report = build(root)
    assert states(report) == {**{s: "cached" for s in STAGES[:-1]}, "verify": "ok"}

    # factory_args: export changes, everything after it waits on it
    set_manifest(root, width=24, atol=0.05)
    lines = _explain(root)
    assert "material.module.factory_args.width: 16 -> 24" in lines["export"]
    assert all("upstream" in lines[s] for s in STAGES[1:])
    proc, report = build(root)
    assert states(report)["export"] == "ok"

    # a factory source file: its digest is the changed field
    (root / "tinymods" / "mlp.py").write_text(MLP + "\n# a comment changes the source digest\n")
    lines = _explain(root)
    assert lines["export"].startswith("will rebuild; changed: material.dependencies.tinymods/mlp.py:")
    proc, report = build(root)
    assert proc.returncode == 0 and states(report)["export"] == "ok", proc.stderr[-2000:]
    assert all(v.startswith("up to date") for v in _explain(root).values())
