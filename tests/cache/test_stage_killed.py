"""A stage the kernel kills (the OOM killer sends SIGKILL) is reported, not silent: every stage that
runs does so in its own process (trtforge/processes/isolate.py), and the parent names the module, the stage,
the signal and the child's peak memory; the report is written, nothing is published, the failed
stage's log is kept and the cache stays intact. The kill is the test hook `run:<stage>`, fired
inside the stage's own process as it starts."""

from __future__ import annotations

import os
import signal

import pytest

from tests.cache.conftest import STAGES, assert_consistent, build, set_manifest, states
from tests.conftest import cache_problems
from trtforge.errors import ExportError
from trtforge.processes.isolate import StageCrashed, StageKilled, run_in_child

KILL = "TRTFORGE_TEST_KILL_AT"


def test_result_and_peak_come_back_from_the_child():
    big = 64 << 20

    def work():
        return {"n": len(bytearray(big)), "pid": os.getpid()}

    result, peak_kib = run_in_child(work, module="m", stage="s")
    assert result["n"] == big and result["pid"] != os.getpid()
    assert peak_kib * 1024 >= big  # the child's own maximum RSS, from wait4


def test_user_errors_keep_their_type_and_bugs_their_traceback():
    def user_error():
        raise ExportError("bad factory", where="modules.m.factory", module="m")

    with pytest.raises(ExportError, match="bad factory"):
        run_in_child(user_error, module="m", stage="export")

    def bug():
        return {}["missing"]

    with pytest.raises(StageCrashed, match=r"(?s)Traceback.*KeyError: 'missing'"):
        run_in_child(bug, module="m", stage="verify")


def test_a_signal_is_named_with_the_peak():
    def die():
        bytearray(32 << 20)
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(StageKilled, match=r"stage 'verify' was killed by SIGKILL at a peak of \d+\.\d\d GiB RSS"):
        run_in_child(die, module="m", stage="verify")


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["export", "verify"])
def test_a_killed_stage_is_reported_and_nothing_is_published(request, stage):
    # verify: the built project with a new tolerance, so that verify alone runs (and is killed);
    # the engine published before is withdrawn
    tiny_project = request.getfixturevalue("tiny_project" if stage == "export" else "built_project")
    if stage == "verify":
        set_manifest(tiny_project, atol=0.02)
    proc, report = build(tiny_project, env={KILL: f"run:{stage}"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("trtforge: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "module 'mlp'" in errors[0] and f"stage '{stage}' was killed by SIGKILL" in errors[0]
    assert "GiB RSS" in errors[0] and "out-of-memory killer" in errors[0]
    got = states(report)
    assert got[stage] == "failed" and all(got[s] == "not run" for s in STAGES[STAGES.index(stage) + 1 :])
    assert not list((tiny_project / "engines").glob("*/mlp.engine"))
    assert (tiny_project / "engines" / "report.json").exists()
    assert cache_problems(tiny_project / ".trtforge-cache") == []
    assert_consistent(tiny_project)
    proc, report = build(tiny_project)  # the next build finishes and reuses what was finished
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(states(report)[s] == "cached" for s in STAGES[: STAGES.index(stage)])
