"""Failures around a good module: disk full while publishing, Ctrl-C mid-build, a corrupted or
missing engine handed to `trtforge verify`, a GPU the backend refuses. One built project is shared
by the module (the tiny engine is built once; later builds are cache hits)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import STAGES, run_cli
from tests.errors.conftest import build, nothing_lost, one_error_line, write_case

pytestmark = pytest.mark.slow  # the console script on real builds

TINY = """
[modules.tiny]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 8, 8] }
"""


@pytest.fixture(scope="module")
def published(project) -> Path:
    """The tiny module built, verified and published once into out-good/."""
    write_case(project, "good", TINY)
    r = build(project, "good")
    assert r.returncode == 0, r.stderr
    (engine,) = (project / "out-good").rglob("tiny.engine")
    return engine.parent


def copy_engines(published: Path, dest: Path) -> Path:
    """The whole engines folder (index.json included) copied to `dest`; returns the target folder."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(published.parent, dest)
    return dest / published.name


def test_json_prints_only_json(project, published):
    r = run_cli("build", "--json", "good.toml", cwd=project)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert doc["modules"][0]["name"] == "tiny" and doc["modules"][0]["ok"]


def test_json_on_failure_prints_only_json(project):
    write_case(project, "json_fail", TINY.replace("make_tiny", "make_raises"))
    r = run_cli("build", "--json", "json_fail.toml", cwd=project)
    one_error_line(r, 2, "factory raised ValueError")
    assert json.loads(r.stdout)["modules"][0]["ok"] is False


def test_ci_progress_is_plain_lines(project):
    """Not a TTY (as in CI): one plain line per stage start and end, no carriage returns."""
    write_case(project, "progress", TINY.replace("[1, 3, 8, 8]", "[1, 3, 8, 12]"))
    r = run_cli("build", "progress.toml", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    for stage in STAGES:
        assert f"[1/1] tiny {stage} ..." in r.stderr
        assert re.search(rf"^\[1/1\] tiny {stage} [0-9.]+s, RSS [0-9.]+ [MG]iB$", r.stderr, re.M), r.stderr
    again = run_cli("build", "progress.toml", cwd=project)
    assert "[1/1]" not in again.stderr  # all cached: silent but for the status table
    quiet = run_cli("build", "--quiet", "progress.toml", cwd=project)
    assert quiet.stdout == "" and "[1/1]" not in quiet.stderr


def test_disk_full_while_publishing(project, published):
    """ENOSPC injected at the sidecar write, after the engine was copied: the engine is withdrawn,
    nothing half-written stays, the cache verifies, and the next run publishes from the cache."""
    case = "enospc"
    write_case(project, case, TINY)
    r = build(project, case, env={"TRTFORGE_TEST_ENOSPC_AT": "publish:write-sidecar"})
    one_error_line(r, 2, "module 'tiny'", "No space left on device", "tiny.json", "nothing was published")
    nothing_lost(project, case, "tiny")
    assert not [p for p in (project / f"out-{case}").rglob("tiny.*")]
    r = build(project, case)
    assert r.returncode == 0, r.stderr
    assert list((project / f"out-{case}").rglob("tiny.engine"))


def test_ctrl_c_during_build(project):
    """SIGINT inside TensorRT's builder (export already done): exit 130, one line, no engine, no
    stage folder left, the cache verifies; the next run reuses the export and finishes. The signal
    comes from the process itself at the builder's first progress callback (test hook
    TRTFORGE_TEST_SIGINT_AT=work:build), where TensorRT used to swallow the KeyboardInterrupt and
    build, publish and exit 0; no timing is involved. Every stage and SIGTERM: tests/cache/test_interrupts.py."""
    case = "interrupt"
    write_case(project, case, TINY.replace("[1, 3, 8, 8]", "[1, 3, 16, 8]"))
    r = build(project, case, env={"TRTFORGE_TEST_SIGINT_AT": "work:build"})
    line = one_error_line(r, 130, "interrupted", "the next run resumes")
    assert "cache is intact" in line
    nothing_lost(project, case, "tiny")
    r = run_cli("build", f"{case}.toml", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "[1/1] tiny export ..." not in r.stderr  # the export was kept
    assert "[1/1] tiny build ..." in r.stderr
    assert list((project / f"out-{case}").rglob("tiny.engine"))


def test_corrupted_engine_is_not_deserialised(project, published):
    folder = copy_engines(published, project / "corrupt")
    engine = folder / "tiny.engine"
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.write_bytes(bytes(data))
    r = run_cli("verify", "corrupt", cwd=project)
    one_error_line(
        r,
        3,
        "1 of 1 engine(s) failed",
        "module 'tiny'",
        "tiny.engine",
        "does not match its digest in index.json",
        "not deserialised",
    )


def test_missing_engine_bundle_file(project, published):
    folder = copy_engines(published, project / "partial")
    (folder / "tiny.reference.npz").unlink()
    r = run_cli("verify", "partial", cwd=project)
    one_error_line(r, 3, "module 'tiny'", "tiny.reference.npz is missing")


FAKE_SMI = """#!/bin/sh
# test double: nvidia-smi on a Hopper machine (no real GPU exists here)
echo "NVIDIA H100 80GB HBM3, 9.0"
"""


def test_gpu_the_backend_refuses(project, published, tmp_path):
    """A TensorRT-RTX engine on Hopper: not run, and with --require-engine-check a failure that
    says why. The GPU is a fake nvidia-smi on PATH (a named test double: no GPU exists here)."""
    bin_dir = tmp_path / "fake_gpu_bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TRTFORGE_ASSUME_GPU": "1"}
    lenient = run_cli("verify", str(published.parent), cwd=project, env=env)
    assert lenient.returncode == 0, lenient.stderr
    assert "tiny: not run: engine not run here" in lenient.stdout
    strict = run_cli("verify", "--require-engine-check", str(published.parent), cwd=project, env=env)
    one_error_line(strict, 3, "module 'tiny'", "sm90", "does not run on Hopper")
