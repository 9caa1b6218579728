"""Several processes building one manifest on one cache build each artifact exactly once."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.cache.conftest import STAGES, TRTFORGE, assert_consistent, popen_build

pytestmark = pytest.mark.slow  # real processes building real engines


def test_four_concurrent_builds_build_each_stage_once(tiny_project):
    procs = [popen_build(tiny_project) for _ in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    reports = [json.loads(out) for out, _ in outs]
    for stage in STAGES:
        runs = sum(r["modules"][0]["stages"][stage]["state"] == "ok" for r in reports)
        assert runs == 1, f"{stage} ran {runs} times"
    keys = {r["modules"][0]["stages"]["build"]["key"] for r in reports}
    assert len(keys) == 1
    assert_consistent(tiny_project)


def test_jobs_and_a_second_process_build_each_module_stage_once(tiny_project):
    with open(tiny_project / "engines.toml", "a") as f:
        f.write(
            '\n[modules.mlp2]\nfactory = "tinymods.mlp:make_mlp"\nfactory_args = { width = 12 }\n'
            'inputs.x = { shape = [2, 8], dtype = "float16" }\noutputs = ["y"]\n'
        )
    procs = [
        subprocess.Popen(
            [TRTFORGE, "build", "engines.toml", "--json", *extra],
            cwd=tiny_project,
            # 4 pretend cores: --jobs 2 runs two real workers (a 2-core machine caps it to one)
            env={**os.environ, "TRTFORGE_TEST_CORES": "4"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in (["--jobs", "2"], [])
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    reports = [json.loads(out) for out, _ in outs]
    for module in ("mlp", "mlp2"):
        for stage in STAGES:
            runs = sum(
                m["stages"][stage]["state"] == "ok" for r in reports for m in r["modules"] if m["name"] == module
            )
            assert runs == 1, f"{module} {stage} ran {runs} times"
    assert [m["name"] for m in reports[0]["modules"]] == ["mlp", "mlp2"]  # manifest order
    assert_consistent(tiny_project)
