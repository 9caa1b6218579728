"""Several processes building one manifest on one cache build each artifact exactly once."""

from __future__ import annotations

import json

from tests.cache.conftest import STAGES, assert_consistent, popen_build


def test_four_concurrent_builds_build_each_stage_once(tiny_project):
    procs = [popen_build(tiny_project) for _ in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    reports = [json.loads(out) for out, _ in outs]
    for stage in STAGES:
        runs = sum(r["modules"][0]["stages"][stage]["state"] == "ok" for r in reports)
        assert runs == 1, f"{stage} ran {runs} times"
    keys = {r["modules"][0]["stages"]["build"]["key"] for r in reports}
    assert len(keys) == 1
    assert_consistent(tiny_project)
