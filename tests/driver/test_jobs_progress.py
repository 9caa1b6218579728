"""--jobs N: progress is shown (the workers send theirs to the parent), and N is capped at the CPU
cores with a note saying why (measured: README, "--jobs")."""

from __future__ import annotations

import re
import shutil
import threading

import pytest

from tests.conftest import run_cli
from tests.errors.conftest import HERE as ERRORS
from trtforge.driver import jobs
from trtforge.driver.api import open_store
from trtforge.driver.context import RunContext
from trtforge.driver.request import BuildRequest
from trtforge.manifest import load_manifest

TWO = """
[modules.a]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 8, 8] }

[modules.b]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 16, 16] }
"""


class Recorder:
    """A progress display that remembers what it was shown (the forwarder thread calls it)."""

    def __init__(self):
        self.events, self.lock = [], threading.Lock()

    def start(self, module, stage):
        with self.lock:
            self.events.append(("start", module, stage))

    def done(self, module, stage, seconds, rss_mib=None):
        with self.lock:
            self.events.append(("done", module, stage))


@pytest.mark.slow
def test_jobs_shows_progress_and_workers_send_theirs(tmp_path):
    shutil.copy(ERRORS / "bad_models.py", tmp_path / "bad_models.py")
    (tmp_path / "engines.toml").write_text(TWO)
    r = run_cli("build", "--jobs", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # stderr is not a terminal: one plain line per stage start and end
    for module in ("a", "b"):
        assert re.search(rf"^\[[12]/2\] {module} export \.\.\.$", r.stderr, re.M), r.stderr
        assert re.search(rf"^\[[12]/2\] {module} verify [0-9.]+s, RSS [0-9.]+ [MG]iB$", r.stderr, re.M), r.stderr
    capped = jobs.usable_cores() // jobs.CORES_PER_JOB < 2
    assert ("trtforge: note: --jobs 2: running 1 at a time" in r.stderr) == capped, r.stderr
    assert sorted(p.name for p in (tmp_path / "engines").glob("*/*.engine")) == ["a.engine", "b.engine"]

    # two workers (build_modules runs the N it is given), verify re-run in each: their progress arrives
    manifest = load_manifest(tmp_path / "engines.toml")
    recorder = Recorder()
    ctx = RunContext(open_store(manifest), manifest, BuildRequest(jobs=2, force_from="verify"), recorder)
    results = list(jobs.build_modules(ctx, list(manifest.modules)))
    assert [x.name for x in results] == ["a", "b"] and all(x.ok for x in results)
    assert sorted(recorder.events) == sorted((k, m, "verify") for k in ("start", "done") for m in ("a", "b"))


def test_jobs_are_capped_by_the_cpu_cores_with_a_note():
    assert jobs.effective_jobs(2, 3, cores=4) == (2, None)
    assert jobs.effective_jobs(8, 2, cores=16) == (2, None)  # no more workers than modules
    n, note = jobs.effective_jobs(2, 3, cores=2)
    assert n == 1 and note.startswith("--jobs 2: running 1 at a time; this machine has 2 CPU core(s)")
    assert jobs.effective_jobs(1, 5, cores=2) == (1, None)
    assert jobs.effective_jobs(4, 0, cores=2) == (1, None)
