"""`build --max-memory SIZE`: a stage whose processes pass the budget is stopped and reported in
one line with its peak (exit 2); the cache keeps only finished stages and the engines folder stays
consistent. The budget is far below what any stage's process holds from its first instant (it is
forked from a process with numpy, onnx and onnxruntime loaded), so no timing decides the outcome:
a stage stopped while it runs and one that finished over the budget fail alike."""

from __future__ import annotations

import pytest

from tests.cache.conftest import assert_consistent, build, records, set_manifest, states
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_a_stage_over_the_memory_budget_is_one_line(built_project):
    cache = built_project / ".trtforge-cache"
    n_records = len(records(cache))
    set_manifest(built_project, width=24)  # export must run
    proc, report = build(built_project, "--max-memory", "64M")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("trtforge: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "stage 'export' passed its memory budget of 0.06 GiB" in errors[0] and " RSS" in errors[0], errors[0]
    assert states(report)["export"] == "failed"
    assert len(records(cache)) == n_records  # nothing of the stopped stage kept
    assert_consistent(built_project)

    proc = run_cli("build", "--max-memory", "lots", cwd=built_project)
    assert proc.returncode == 2 and "--max-memory: 'lots' is not a size" in proc.stderr, proc.stderr

    proc, report = build(built_project)  # the default budget: the machine's memory less a margin
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert states(report)["export"] == "ok"
