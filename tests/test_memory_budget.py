"""The per-stage memory budget (isolate.py): the parent samples the stage's process-tree RSS
while it waits and stops a tree over the budget; a stage that finished over it between two samples
is not kept either. No timing race: the stage below holds its memory and waits on a pipe nobody
writes, so only the budget can end it (if the watch failed, it would end after 120 s, "finished")."""

from __future__ import annotations

import os
import select

import pytest

from trtforge.processes import isolate
from trtforge.processes.isolate import StageOverMemory, run_in_child, tree_rss


@pytest.fixture
def budget_reset():
    before = isolate.MAX_MEMORY
    yield
    isolate.MAX_MEMORY = before


def _own_rss() -> int:
    """This process's RSS alone: its tree may hold other children (the warm CLI's zygote, a few
    hundred MB with torch loaded), which made a budget of tree + 200 MB too large to reach."""
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_stage_over_its_budget_is_stopped_while_it_runs(budget_reset):
    r, w = os.pipe()
    isolate.MAX_MEMORY = _own_rss() + (200 << 20)  # the child starts at about our size

    def hog() -> dict:
        held = b"x" * (600 << 20)  # written: resident
        select.select([r], [], [], 120)
        return {"held": len(held)}

    try:
        with pytest.raises(StageOverMemory) as e:
            run_in_child(hog, module="m", stage="export")
    finally:
        os.close(r)
        os.close(w)
    line = e.value.one_line()
    assert "stage 'export' passed its memory budget of" in line and "was stopped at" in line, line
    assert "--max-memory" in line and e.value.exit_code == 2


def test_a_stage_within_its_budget_runs(budget_reset):
    isolate.MAX_MEMORY = tree_rss(os.getpid()) + (1 << 30)
    assert run_in_child(lambda: {"ok": 1}, module="m", stage="export")[0] == {"ok": 1}


def test_the_default_budget_is_the_machine_less_a_margin(budget_reset):
    isolate.MAX_MEMORY = None
    have = isolate.machine_memory()
    assert have is not None and isolate.budget() == have - max(int(have * 0.10), 1 << 30)
    isolate.MAX_MEMORY = 123
    assert isolate.budget() == 123
