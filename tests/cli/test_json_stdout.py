"""`--json` prints exactly one JSON document on stdout, whatever the libraries print, in every mode:
an engine that runs (polygraphy and TensorRT log to stdout the moment it loads), warnings, remote
fetches, user errors, usage errors; every reporting command has the same shape (ok, exit_code,
modules). The GPU is a fake `nvidia-smi` on PATH with TRTFORGE_ASSUME_GPU=1 (a named test double:
no GPU exists here); the engine load then fails for real in the CUDA runtime, after polygraphy and
TensorRT printed their lines."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import TINY
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

RTX_4090 = """#!/bin/sh
# test double: nvidia-smi on an RTX 4090 (sm89, a GPU TensorRT-RTX engines run on); no GPU exists here
echo "NVIDIA GeForce RTX 4090, 8.9"
"""

SHAPE = {"ok", "exit_code", "modules"}


def gpu_env(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "fake_gpu_bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(RTX_4090)
    (bin_dir / "nvidia-smi").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TRTFORGE_ASSUME_GPU": "1"}


def one_document(r) -> dict:
    doc = json.loads(r.stdout)  # the whole of stdout: one document, nothing before or after it
    assert SHAPE <= doc.keys(), doc.keys()
    assert doc["exit_code"] == r.returncode and doc["ok"] is (r.returncode == 0), (doc["exit_code"], r.returncode)
    return doc


def test_verify_json_while_the_engine_runs(tiny_built, tmp_path):
    """The README's CI recipe on a machine where the engine can run: polygraphy's and TensorRT's
    lines go to stderr, stdout parses."""
    r = run_cli("verify", "engines", "--json", cwd=tiny_built, env=gpu_env(tmp_path))
    doc = one_document(r)
    assert r.returncode == 3, r.stderr  # no CUDA driver behind the double: the engine does not load
    assert "Loading bytes from" in r.stderr, r.stderr  # polygraphy ran, and printed on stderr
    (only,) = doc["modules"]
    assert only["module"] == "tiny" and only["status"] == "failed" and "engine did not run" in only["reason"]
    assert doc["failed"] == 1 and doc["results"] == [{k: v for k, v in only.items() if k != "name"}]  # as before


def test_build_json_while_the_engine_runs(tiny_copy, tmp_path):
    """build's verify stage runs the engine (the GPU set is in its key): stdout still parses."""
    r = run_cli("build", "--json", "engines.toml", cwd=tiny_copy, env=gpu_env(tmp_path))
    doc = one_document(r)
    assert r.returncode == 3, r.stderr
    assert "Loading bytes from" in r.stderr, r.stderr
    assert [m["name"] for m in doc["modules"]] == ["tiny"] and doc["modules"][0]["ok"] is False
    assert doc["modules"][0]["stages"]["verify"]["state"] == "failed"
    assert "error" in doc and "engine" in doc["error"]


def test_build_json_with_warnings_and_remote_fetches(tiny_copy, tmp_path):
    """A module with an FP32 island warns; a second project with an empty local cache fetches
    every stage from the remote cache (file:// here) and says so: one document each time."""
    remote = {"TRTFORGE_REMOTE_CACHE": (tmp_path / "remote").as_uri()}
    (tiny_copy / "engines.toml").write_text(
        TINY + '\n[modules.island]\nfactory = "bad_models:make_fp32_island"\ninputs.x = { shape = [1, 3, 8, 8] }\n'
    )
    first = run_cli("build", "--json", "engines.toml", cwd=tiny_copy, env=remote)
    assert first.returncode == 0, first.stderr
    doc = one_document(first)
    assert doc["warnings"] and {w["module"] for w in doc["warnings"]} == {"island"}
    assert "trtforge: warning: module 'island'" in first.stderr
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tiny_copy / "bad_models.py", other)
    shutil.copy(tiny_copy / "engines.toml", other)
    fetched = run_cli("build", "--json", "engines.toml", cwd=other, env=remote)
    assert fetched.returncode == 0, fetched.stderr
    doc = one_document(fetched)
    assert {m["name"] for m in doc["modules"]} == {"tiny", "island"}
    (island,) = [m for m in doc["modules"] if m["name"] == "island"]  # tiny was a local hit: never uploaded
    assert set(island["remote"]["fetched"]) == set(island["stages"])
    assert {s["state"] for s in island["stages"].values()} == {"cached"}  # fetched, not built


@pytest.mark.parametrize(
    "args",
    [
        ("build", "--json", "missing.toml"),  # a user error before any stage
        ("inspect", "tinyy", "--json"),  # a misspelt module
        ("verify", "no-such-folder", "--json"),
        ("explain", "--json", "missing.toml"),
        ("cache", "gc", "--json", "--max-size", "lots"),
        ("build", "--json", "--no-such-flag"),  # Click's own usage error
    ],
)
def test_json_on_a_user_error_is_one_document(tiny_built, args):
    r = run_cli(*args, cwd=tiny_built)
    assert r.returncode == 2, r.stdout + r.stderr
    doc = one_document(r)
    assert doc["error"].startswith("trtforge: error: ") and doc["modules"] == []
    assert doc["error"] in r.stderr and "Traceback" not in r.stderr


def test_every_reporting_command_has_one_shape(tiny_built, tmp_path):
    for args in (
        ("build", "--json"),
        ("verify", "engines", "--json"),
        ("inspect", "tiny", "--json"),
        ("explain", "--json"),
        ("export", "tiny", "-o", str(tmp_path / "onnx"), "--json"),
        ("debug", "precision", "tiny", "--json"),
        ("cache", "ls", "--json"),
        ("cache", "verify", "--json"),
    ):
        r = run_cli(*args, cwd=tiny_built)
        assert r.returncode == 0, (args, r.stderr)
        doc = one_document(r)
        assert doc["ok"] is True and isinstance(doc["modules"], list), args
        names = {m["name"] for m in doc["modules"]}
        assert names == ({"tiny"} if args[0] != "cache" or args[1] == "ls" else set()), (args, names)
    explained = one_document(run_cli("explain", "--json", cwd=tiny_built))
    assert explained["up_to_date"] is True
    assert [s["stage"] for s in explained["modules"][0]["stages"]][0] == "export"
