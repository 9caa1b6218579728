"""--jobs N: progress is shown (the workers send theirs to the parent), and N is capped at the CPU
cores with a note saying why (measured: README, "--jobs")."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import run_cli
from tests.errors.conftest import HERE as ERRORS
from trtforge.driver import jobs

TWO = """
[modules.a]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 8, 8] }

[modules.b]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 16, 16] }
"""


@pytest.mark.slow
def test_jobs_shows_the_workers_progress(tmp_path):
    shutil.copy(ERRORS / "bad_models.py", tmp_path / "bad_models.py")
    (tmp_path / "engines.toml").write_text(TWO)
    r = run_cli("build", "--jobs", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # stderr is not a terminal: one plain line per stage start and end, from the workers
    for module in ("a", "b"):
        assert f"[trtforge] {module}: export ..." in r.stderr and f"[trtforge] {module}: verify done in" in r.stderr
    assert ("running 1 at a time" in r.stderr) == (jobs.usable_cores() < 2), r.stderr
    assert sorted(p.name for p in (tmp_path / "engines").glob("*/*.engine")) == ["a.engine", "b.engine"]


def test_jobs_are_capped_at_the_cpu_cores_with_a_note():
    assert jobs.effective_jobs(2, 3, cores=2) == (2, None)
    assert jobs.effective_jobs(8, 2, cores=2) == (2, None)  # no more workers than modules anyway
    n, note = jobs.effective_jobs(8, 5, cores=2)
    assert n == 2 and note.startswith("--jobs 8: running 2 at a time; this machine has 2 CPU core(s)")
    assert jobs.effective_jobs(1, 5, cores=2) == (1, None)
