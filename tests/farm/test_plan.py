"""`trtforge plan`: the planned jobs, run as separate processes (each its own checkout and local
cache, one S3 server on localhost), assemble the same engines/ as one machine building it all; a
second plan leaves out what the remote holds. Real exports and TensorRT-RTX CPU builds.

At 7fe7866 there was no `plan` command and no way to run only the stages every target shares."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.cache.conftest import STAGES, build, states, write_project
from tests.conftest import run_cli
from tests.farm.conftest import remote_of

pytestmark = pytest.mark.slow

MANIFEST = """\
[defaults]
precision.rules = []
verify = { atol = 0.01 }

[modules.mlp]
factory = "tinymods.mlp:make_mlp"
inputs.x = { shape = [2, 8], dtype = "float16" }
outputs = ["y"]

[modules.wide]
factory = "tinymods.mlp:make_mlp"
factory_args = { width = 24 }
inputs.x = { shape = [2, 8], dtype = "float16" }
outputs = ["y"]

[targets.ampere]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.6"]

[targets.ada]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.9"]
"""


def _checkout(root: Path) -> Path:
    write_project(root)
    (root / "engines.toml").write_text(MANIFEST)
    return root


def _plan(root: Path, remote) -> dict:
    r = run_cli("plan", "-m", "engines.toml", "--json", "-q", cwd=root, env=remote.env())
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)  # the one document shape of every --json command (issue 29)
    assert doc["ok"] is True and doc["exit_code"] == 0
    assert {m["name"] for m in doc["modules"]} == {j["module"] for j in doc["jobs"] if j["module"]}
    return doc


def _digests(root: Path) -> dict:
    return {
        name: entry["files"]
        for name, entry in json.loads((root / "engines" / "index.json").read_text())["modules"].items()
    }


def test_planned_jobs_on_separate_runners_assemble_one_machines_engines(remote, tmp_path):
    planned = _plan(_checkout(tmp_path / "planner"), remote)
    jobs = planned["jobs"]
    ids = [j["id"] for j in jobs]
    assert ids == [
        "prepare-mlp",
        "prepare-wide",
        "build-ampere-mlp",
        "build-ada-mlp",
        "build-ampere-wide",
        "build-ada-wide",
        "assemble",
    ]
    by_id = {j["id"]: j for j in jobs}
    assert by_id["build-ada-wide"]["needs"] == ["prepare-wide"] and by_id["build-ada-wide"]["runs_on"] == "cpu"
    assert by_id["assemble"]["needs"] == ids[2:6]
    assert by_id["assemble"]["argv"][1:] == ["build", "engines.toml", "--from-cache", "--remote-read-only"]
    assert "--until" in by_id["prepare-mlp"]["argv"] and planned["cached"] == []

    # every job in its own checkout with its own local cache: one runner each, as a CI matrix runs them
    figures = {}
    for job in jobs:
        root = _checkout(tmp_path / job["id"])
        t0 = time.perf_counter()
        proc, report = build(root, *job["argv"][3:], env=remote.env())  # argv: trtforge build engines.toml ...
        assert proc.returncode == 0, f"{job['id']}: {proc.stderr[-3000:]}"
        wall = time.perf_counter() - t0
        ran = {m["name"]: [s for s, st in states(report, m["name"]).items() if st == "ok"] for m in report["modules"]}
        moved = sum(
            remote_of(report, m["name"]).get("bytes_up", 0) + remote_of(report, m["name"]).get("bytes_down", 0)
            for m in report["modules"]
        )
        figures[job["id"]] = {"wall_s": round(wall, 1), "mb_moved": round(moved / 1e6, 2), "ran": ran}
        if job["kind"] == "prepare":
            assert ran == {job["module"]: list(STAGES[:3])}  # the shared stages, once per module
        elif job["kind"] == "build":  # export, passes and precision from the remote: build and verify only
            assert ran == {f"{job['target']}/{job['module']}": ["build", "verify"]}, ran
        else:
            assert all(not stages for stages in ran.values()), ran
            assembled = _digests(root)
    print(json.dumps(figures, indent=1))  # the closing note's figures (pytest -s)

    # one machine building everything, no remote
    one = _checkout(tmp_path / "one-machine")
    proc, _ = build(one, "--no-remote")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert assembled == _digests(one)
    assert len(assembled) == 4

    # planned again: the remote holds every job's result; only assembling is left
    again = _plan(_checkout(tmp_path / "planner-again"), remote)
    assert [j["id"] for j in again["jobs"]] == ["assemble"]
    assert set(again["cached"]) == set(ids[:6])
    assert again["jobs"][0]["needs"] == []
