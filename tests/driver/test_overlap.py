"""Verify's final ONNX check beside the engine build (issue 25 item 3, driver/overlap.py): it runs
while the build runs, its result is the verify stage's (the same verdict and metrics as when verify
runs it itself), it is left off where there is no room, and it is stopped first when the two pass
the memory budget together."""

from __future__ import annotations

import os
import select
import sys
import threading
from pathlib import Path

import pytest

from tests.verify.faults import ATTN_MANIFEST, faults_project
from trtforge.cache import Store
from trtforge.driver.context import RunContext
from trtforge.driver.lifecycle import judge, run_stages
from trtforge.driver.request import BuildRequest
from trtforge.manifest import load_manifest
from trtforge.processes import isolate

WAIT_S = 300  # a deadline for a condition that must come true, not a timing


def _build(root: Path, cache: Path, overlap: bool | None):
    manifest = load_manifest(root / "engines.toml")
    ctx = RunContext(Store(cache), manifest, request=BuildRequest(overlap=overlap))
    return judge(run_stages(ctx, manifest.modules[0]))


def _in(function: str) -> bool:
    f = sys._getframe(1)
    while f is not None and f.f_code.co_name != function:
        f = f.f_back
    return f is not None


def _read_fifo(path: Path) -> str:
    """One line from a FIFO whose writer may never come: fails at the deadline."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        ready, _, _ = select.select([fd], [], [], WAIT_S)
        assert ready, f"nothing wrote {path.name} within {WAIT_S} s"
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


@pytest.mark.slow  # real engine builds, in-process
def test_the_check_runs_while_the_engine_builds_and_is_verifys_own(tmp_path, monkeypatch):
    """The build's child stops inside TensorRT's builder (a named checkpoint) until the FP16-faithful
    evaluation of the precision graph has finished: only a check running beside it can finish
    then. Its result is what verify publishes, equal to verify's own run without the overlap."""
    root = faults_project(tmp_path / "p", ATTN_MANIFEST)
    plain = _build(root, tmp_path / "plain-cache", overlap=False)
    assert plain.ok, plain.error
    own = plain.records["verify"].meta["checks"]["precision_rules"]
    assert "beside" not in own

    pause = tmp_path / "pause"
    pause.mkdir()
    for name in ("reached", "go", "evaluated"):
        os.mkfifo(pause / name)
    monkeypatch.setenv("TRTFORGE_TEST_PAUSE_AT", "work:build")
    monkeypatch.setenv("TRTFORGE_TEST_PAUSE_DIR", str(pause))
    from trtforge.graphs.evaluate import Evaluator

    run = Evaluator.run

    announced_once: list = []

    def announced(self, feeds, keep=(), observe=None):  # inherited by the forked children
        out = run(self, feeds, keep=keep, observe=observe)
        if self.mode == "fp16" and _in("final_onnx_check") and not announced_once:  # verify's check, ahead
            announced_once.append(True)
            with open(pause / "evaluated", "w") as f:  # blocks until the test reads it
                f.write("fp16\n")
        return out

    monkeypatch.setattr(Evaluator, "run", announced)
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(r=_build(root, tmp_path / "cache", overlap=True)))
    worker.start()
    try:
        assert _read_fifo(pause / "reached") == "work:build"  # the build is inside the builder
        assert _read_fifo(pause / "evaluated") == "fp16\n"  # and the check ran meanwhile
    finally:
        with open(pause / "go", "w") as f:
            f.write("go")
        worker.join(WAIT_S)
    result = done["r"]
    assert result.ok, result.error
    beside = result.records["verify"].meta["checks"]["precision_rules"]
    assert beside["beside"] == "build"
    assert beside["status"] == own["status"] == "ok"
    assert beside["outputs"] == own["outputs"]  # the same metrics to the last digit


def test_no_room_no_overlap(tmp_path, monkeypatch):
    """Off unless asked; asked, a budget too small for the two measured peaks together, or one
    core, runs nothing beside the build (the memory rule is the stages' own budget, --max-memory)."""
    from trtforge.driver import overlap
    from trtforge.driver.stages import stage_table

    root = faults_project(tmp_path / "p", ATTN_MANIFEST)
    manifest = load_manifest(root / "engines.toml")
    ctx = RunContext(Store(tmp_path / "cache"), manifest, request=BuildRequest())
    module = manifest.modules[0]
    records = run_stages(
        RunContext(ctx.store, manifest, request=BuildRequest(until="precision_rules")), module, until="precision_rules"
    ).records
    steps = stage_table("tensorrt-rtx")
    build, verify = steps[3], steps[4]
    assert overlap.plan_ahead(ctx, module, build, verify, records) is None  # off unless asked
    asked = RunContext(ctx.store, manifest, request=BuildRequest(overlap=True))
    assert overlap.plan_ahead(asked, module, build, verify, records) is not None  # room here
    assert overlap.plan_ahead(asked, module, verify, None, records) is None  # nothing after verify
    monkeypatch.setattr(isolate, "MAX_MEMORY", 64 << 20)
    assert overlap.plan_ahead(asked, module, build, verify, records) is None
    monkeypatch.setattr(isolate, "MAX_MEMORY", None)
    monkeypatch.setattr(overlap, "_cores", lambda: 1)
    assert overlap.plan_ahead(asked, module, build, verify, records) is None


def _hold(megabytes: int, fifo: str) -> dict:
    block = bytearray(megabytes << 20)
    block[::4096] = b"x" * len(block[::4096])  # resident
    with open(fifo) as f:  # held until the test lets go (never, when it is stopped)
        f.read()
    return {"held": len(block)}


def _wait_gone(pid_file: str) -> dict:
    """The stage: returns once the work beside it is gone (stopped by the watcher)."""
    pid = int(Path(pid_file).read_text())
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], WAIT_S)
        return {"stopped": bool(ready)}
    finally:
        os.close(fd)


def test_work_beside_a_stage_is_stopped_first_at_the_budget(tmp_path, monkeypatch):
    """Together past the budget: the watcher stops the work beside (its result is then None, and
    its stage does the work itself), and the stage itself finishes."""
    from functools import partial

    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    beside = isolate.start_beside(partial(_hold, 256, str(fifo)), module="m", stage="verify (beside build)")
    assert beside is not None
    (tmp_path / "pid").write_text(str(beside.pid))
    # room for the stage alone (a fork of this process), not for it and 256 MiB more beside it;
    # this process's own RSS, not its tree's (the warm CLI's zygote may be a child of it)
    own = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    monkeypatch.setattr(isolate, "MAX_MEMORY", own + (160 << 20))
    out, _ = isolate.run_in_child(partial(_wait_gone, str(tmp_path / "pid")), module="m", stage="build", beside=beside)
    assert out == {"stopped": True} and beside.dropped > 0
    assert isolate.finish_beside(beside) is None
