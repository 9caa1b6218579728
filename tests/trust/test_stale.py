"""A subset build (--target / --module) never leaves a published engine looking current when the
stages it was built from have moved on: it is marked stale in index.json, its sidecar and the
reports, and `trtforge verify` fails on it (exit 3). Publishing it again clears the mark."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.cache.conftest import build, states
from tests.conftest import run_cli
from tests.trust.conftest import set_two_targets

pytestmark = pytest.mark.slow


def test_a_target_subset_marks_the_other_target_stale(two_targets):
    engines = two_targets / "engines"
    old_b = (engines / "b" / "mlp.engine").read_bytes()
    set_two_targets(two_targets, width=24)  # the weights change: every engine must be rebuilt

    proc, report = build(two_targets, "--target", "a")
    assert proc.returncode == 0, proc.stderr[-2000:]
    why = "stale: built from an older export; run `trtforge build --target b --module mlp`"
    assert f"module 'b/mlp': {why}" in proc.stderr
    index = json.loads((engines / "index.json").read_text())
    assert index["modules"]["b/mlp"]["stale"] == why and "stale" not in index["modules"]["a/mlp"]
    assert json.loads((engines / "b" / "mlp.json").read_text())["stale"] == why
    assert (engines / "b" / "mlp.engine").read_bytes() == old_b  # marked, not silently kept as current
    full = json.loads((engines / "report.json").read_text())
    assert set(states(full, "b/mlp").values()) == {"stale"}
    assert why in (engines / "REPORT.md").read_text()

    proc = run_cli("verify", "engines", cwd=two_targets)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"b/mlp: failed: {why}" in proc.stdout
    assert "a/mlp: failed" not in proc.stdout

    proc, report = build(two_targets, "--target", "b")  # built again: current, the mark gone
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stale" not in json.loads((engines / "index.json").read_text())["modules"]["b/mlp"]
    assert "stale" not in json.loads((engines / "b" / "mlp.json").read_text())
    assert run_cli("verify", "engines", cwd=two_targets).returncode == 0


MLP2 = """
[modules.mlp2]
factory = "tinymods.mlp:make_mlp"
factory_args = { width = WIDTH }
inputs.x = { shape = [2, 8], dtype = "float16" }
outputs = ["y"]
"""


def test_a_module_subset_marks_a_module_whose_inputs_changed(built_project):
    manifest = (built_project / "engines.toml").read_text()
    (built_project / "engines.toml").write_text(manifest + MLP2.replace("WIDTH", "16"))
    proc, _ = build(built_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (built_project / "engines.toml").write_text(manifest + MLP2.replace("WIDTH", "24"))

    proc, _ = build(built_project, "--module", "mlp")  # mlp2's export moved on; it did not run
    assert proc.returncode == 0, proc.stderr[-2000:]
    why = "stale: built from an older export; run `trtforge build --module mlp2`"
    index = json.loads((built_project / "engines" / "index.json").read_text())
    assert index["modules"]["mlp2"]["stale"] == why and "stale" not in index["modules"]["mlp"]
    proc = run_cli("verify", "engines", cwd=built_project)
    assert proc.returncode == 3 and f"mlp2: failed: {why}" in proc.stdout, proc.stdout + proc.stderr


def test_a_sidecar_from_before_upstream_keys_is_judged_by_its_build_record(two_targets):
    """A folder published by trtforge before sidecars recorded `upstream`: the build record's key
    document (kept in the cache) says which export and precision outputs the engine was built from."""
    engines = two_targets / "engines"
    side_path = engines / "b" / "mlp.json"
    side = json.loads(side_path.read_text())
    del side["upstream"]
    side_path.write_text(json.dumps(side, indent=1, sort_keys=True))
    index = json.loads((engines / "index.json").read_text())
    index["modules"]["b/mlp"]["files"]["b/mlp.json"] = hashlib.sha256(side_path.read_bytes()).hexdigest()
    (engines / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    set_two_targets(two_targets, width=24)

    proc, _ = build(two_targets, "--target", "a")
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = json.loads((engines / "index.json").read_text())
    assert index["modules"]["b/mlp"]["stale"].startswith("stale: built from an older export")
