"""SIGINT and SIGTERM inside every stage, the TensorRT build included, end the run with exit 130 /
143 and one line: nothing of the interrupted stage stored, nothing published, no work folder left,
the cache verifies, and the next run resumes from the last finished stage.

The signal is sent by the process to itself at a named point inside each stage's work
(TRTFORGE_TEST_SIGINT_AT / _SIGTERM_AT, trtforge/cache/testhooks.py): for `build` that point is
inside TensorRT's builder (its progress monitor's first callback), where a KeyboardInterrupt used to
be swallowed ("Exception caught in log()") and the engine was built, published, exit 0. No sleeps.

`--jobs`: a worker SIGKILLs its parent at a named point (TRTFORGE_TEST_KILL_PARENT_AT); every worker
must exit with it (they used to build on, orphaned, for minutes)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cache.conftest import STAGES, assert_consistent, build, records, stages_recorded, states, write_project
from tests.conftest import TRTFORGE, cache_problems

pytestmark = pytest.mark.slow  # real processes building real engines

SIGNALS = {"SIGINT": ("TRTFORGE_TEST_SIGINT_AT", 130), "SIGTERM": ("TRTFORGE_TEST_SIGTERM_AT", 143)}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_project(tmp_path_factory.mktemp("interrupts") / "proj")


def _interrupted_cleanly(root: Path, proc, code: int, stage: str) -> None:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == code, (stage, out[-3000:])
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("trtforge: error: ")]
    assert len(errors) == 1 and "interrupted" in errors[0] and "cache is intact" in errors[0], proc.stderr
    assert "Exception caught" not in proc.stderr  # nothing raised inside TensorRT's callbacks
    cache = root / ".trtforge-cache"
    assert stages_recorded(cache) == set(STAGES[: STAGES.index(stage)]), stage
    assert not list((cache / "tmp").iterdir()), "a stage work folder was left behind"
    assert not list((root / "engines").glob("*/mlp.engine")), "an engine was published"
    assert_consistent(root)
    assert cache_problems(cache) == []


@pytest.mark.parametrize("stage", STAGES)
def test_signal_inside_each_stage(project, stage):
    """Stages in order on one project: each run finishes the stages before `stage` (interrupted
    there by the previous case) and is interrupted inside `stage`, once per signal."""
    for env, code in SIGNALS.values():
        proc, _ = build(project, env={env: f"work:{stage}"})
        _interrupted_cleanly(project, proc, code, stage)
    if stage == STAGES[-1]:  # the next run resumes: only verify is left to do
        proc, report = build(project)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert states(report) == {**{s: "cached" for s in STAGES[:-1]}, "verify": "ok"}
        assert list((project / "engines").glob("*/mlp.engine"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def _processes_in(folder: Path) -> list[int]:
    """Live processes whose working folder is `folder` (the build and its workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(os.readlink(f"/proc/{entry}/cwd")) == folder and _alive(int(entry)):
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_jobs_workers_die_with_a_sigkilled_parent(built_project):
    root = built_project  # mlp is built (its worker finds every stage cached); mlp2 is exported
    (root / "engines.toml").write_text(
        (root / "engines.toml").read_text()
        + (
            '\n[modules.mlp2]\nfactory = "tinymods.mlp:make_mlp"\nfactory_args = { width = 12 }\n'
            'inputs.x = { shape = [2, 8], dtype = "float16" }\noutputs = ["y"]\n'
        )
    )
    proc = subprocess.Popen(
        [TRTFORGE, "build", "engines.toml", "--quiet", "--jobs", "2"],
        cwd=root,
        # 4 pretend cores: two real workers (on 2 cores --jobs caps to one, in-process)
        env={**os.environ, "TRTFORGE_TEST_KILL_PARENT_AT": "work:export", "TRTFORGE_TEST_CORES": "4"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    # communicate() returns once every holder of the parent's stderr has closed it: the parent and
    # every worker. Its timeout is the bounded wait; a surviving worker holds the pipe open.
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"workers outlived their SIGKILLed parent: {_processes_in(root)}") from None
    assert proc.returncode == -signal.SIGKILL, stderr[-3000:]
    killers = [int(ln.split()[2]) for ln in stderr.splitlines() if ln.startswith("trtforge-test: worker ")]
    assert killers, stderr[-3000:]  # a worker was mid-export when its parent died
    assert not any(_alive(pid) for pid in killers)
    assert _processes_in(root) == []
    assert_consistent(root)
    proc, report = build(root)  # the next run sweeps the dead workers' folders and finishes
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list((root / ".trtforge-cache" / "tmp").iterdir())
    assert {r["stage"] for r in records(root / ".trtforge-cache")} == set(STAGES)
