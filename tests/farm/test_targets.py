"""[targets.NAME]: export, passes and precision once per module, build and verify per target,
engines/<target>/ by the target's name; a TensorRT target without its GPU is skipped (exit 0)
or fails with --require-target (exit 3). Real TensorRT-RTX CPU builds."""

from __future__ import annotations

import json

import pytest

from tests.cache.conftest import build, records, states
from tests.conftest import has_gpu, run_cli

pytestmark = pytest.mark.slow

TARGETS = """
[targets.consumer]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.6", "8.9"]

[targets.ampere]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.0"]
optimization_level = 2

[targets.h100]
backend = "tensorrt"
gpu = "H100"
"""


def _mod(report, name):
    (mod,) = [m for m in report["modules"] if m["name"] == name]
    return mod


def _keys(report, name, stages=("export", "graph_passes", "precision_rules")):
    return {s: _mod(report, name)["stages"][s]["key"] for s in stages}


@pytest.mark.skipif(has_gpu(), reason="the H100 target must be absent here")
def test_targets_share_the_front_stages(tiny_project):
    proc, plain = build(tiny_project, "--no-remote")  # no [targets]: today's build
    assert proc.returncode == 0, proc.stderr[-2000:]
    (default_folder,) = [p.name for p in (tiny_project / "engines").iterdir() if p.is_dir()]
    assert default_folder.startswith("rtx-")  # named by compute capabilities, as before targets
    with open(tiny_project / "engines.toml", "a") as f:
        f.write(TARGETS)

    proc, report = build(tiny_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = [m["name"] for m in report["modules"]]
    assert names == ["consumer/mlp", "ampere/mlp", "h100/mlp"]
    # export, passes and precision: the same keys as without targets, all from the cache
    for name in ("consumer/mlp", "ampere/mlp"):
        assert _keys(report, name) == _keys(plain, "mlp")
        assert {states(report, name)[s] for s in ("export", "graph_passes", "precision_rules")} == {"cached"}
    # build and verify per target: the first target's settings are new, so both ran
    assert states(report, "consumer/mlp")["build"] == "ok" and states(report, "ampere/mlp")["build"] == "ok"
    assert (
        _mod(report, "consumer/mlp")["stages"]["build"]["key"] != _mod(report, "ampere/mlp")["stages"]["build"]["key"]
    )
    assert _mod(report, "h100/mlp")["skipped"] == "needs H100"
    assert set(states(report, "h100/mlp").values()) == {"skipped"}
    assert "skipped here: needs H100" in proc.stderr
    assert sorted(r["stage"] for r in records(tiny_project / ".trtforge-cache")).count("export") == 1

    engines = tiny_project / "engines"
    assert sorted(json.loads((engines / "index.json").read_text())["modules"]) == ["ampere/mlp", "consumer/mlp"]
    assert not list((engines / default_folder).iterdir())  # the default target's engine withdrawn
    side = json.loads((engines / "consumer" / "mlp.json").read_text())
    assert side["module"] == "mlp"
    assert side["target"]["name"] == "consumer" and side["target"]["compute_capabilities"] == ["8.6", "8.9"]
    assert json.loads((engines / "ampere" / "mlp.json").read_text())["target"]["compute_capabilities"] == ["8.0"]
    assert run_cli("verify", "engines", cwd=tiny_project).returncode == 0

    # one target, and --require-target for the one whose GPU is absent
    proc, report = build(tiny_project, "--target", "ampere")
    assert proc.returncode == 0 and [m["name"] for m in report["modules"]] == ["ampere/mlp"]
    assert set(states(report, "ampere/mlp").values()) == {"cached"}
    assert (engines / "consumer" / "mlp.engine").exists()  # other targets' engines stay
    proc, _ = build(tiny_project, "--target", "h100", "--require-target")
    assert proc.returncode == 3
    assert "target 'h100' cannot be built here: it needs H100" in proc.stderr and "Traceback" not in proc.stderr
    proc, _ = build(tiny_project, "--target", "amper")
    assert proc.returncode == 2 and "no target 'amper'; did you mean 'ampere'?" in proc.stderr


@pytest.mark.parametrize(
    "table, message",
    [
        ('[targets.x]\nrtx_compute_capabilities = ["8.6"]\n', "targets.x.backend: missing required key 'backend'"),
        ('[targets.x]\nbackend = "tensorrt"\n', "targets.x.gpu: a TensorRT target names the GPU it is built on"),
        ('[targets.x]\nbackend = "tensorrt-rtx"\ngpu = "H100"\n', "targets.x.gpu: TensorRT-RTX targets compute"),
        ('[targets.x]\nbackend = "tensorrt-rtx"\nworkspace = 1\n', "targets.x.workspace: unknown key 'workspace'"),
    ],
)
def test_target_table_mistakes(tiny_project, table, message):
    with open(tiny_project / "engines.toml", "a") as f:
        f.write("\n" + table)
    proc = run_cli("build", cwd=tiny_project)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def _fake_nvidia_smi(folder):
    """A test double for nvidia-smi (no GPU can exist here): it reports an H100, so the machine
    that assembles computes verify keys (which name the GPUs present) unlike the runner's."""
    folder.mkdir()
    tool = folder / "nvidia-smi"
    tool.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 9.0'\n")
    tool.chmod(0o755)
    return folder


@pytest.mark.skipif(has_gpu(), reason="the H100 target must be absent on the runner")
def test_assemble_targets_from_the_shared_cache(remote, runners, tmp_path):
    """Runner A builds the RTX targets and uploads; machine B, whose own keys for verify differ
    (another GPU set), assembles both from the remote through their release pointers, runs no
    stage, and names the TensorRT target nobody built (exit 3)."""
    from tests.farm.conftest import farm_build

    a, b = runners(2)
    for root in (a, b):
        with open(root / "engines.toml", "a") as f:
            f.write(TARGETS)
    proc, built = farm_build(a, remote)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "release" in remote.records()  # the pointers travel with the records

    fake = _fake_nvidia_smi(tmp_path / "fakebin")
    import os

    proc, report = farm_build(
        b,
        remote,
        "--from-cache",
        TRTFORGE_ASSUME_GPU="1",
        PATH=f"{fake}{os.pathsep}{os.environ['PATH']}",
        TRTFORGE_REMOTE_CACHE_MODE="read-only",
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    for name in ("consumer/mlp", "ampere/mlp"):
        assert set(states(report, name).values()) == {"cached"}, name
        assert _mod(report, name)["stages"]["verify"]["key"] == _mod(built, name)["stages"]["verify"]["key"]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("trtforge: error:")]
    assert len(errors) == 1 and "target 'h100'" in errors[0] and "not built yet" in errors[0], proc.stderr
    for target in ("consumer", "ampere"):
        assert (b / "engines" / target / "mlp.engine").read_bytes() == (
            a / "engines" / target / "mlp.engine"
        ).read_bytes()
    assert not (b / "engines" / "h100").exists()
