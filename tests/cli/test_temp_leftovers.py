"""Leftovers of killed writers: every trtforge writer names its temp file the same way
(`.<final>.<pid>@<host>.<random>.tmp`, cache/tempnames.py), so `cache gc` and the next build sweep
those whose writer is dead (and keep a live writer's), and `trtforge verify` names trtforge's own
leftover in an engines folder as a note instead of failing on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def host_tag() -> str:
    """This host as trtforge's temp names carry it: the host name and the pid namespace."""
    ns = f"-{os.stat('/proc/self/ns/pid').st_ino}" if os.path.exists("/proc/self/ns/pid") else ""
    return (os.uname().nodename + ns).replace(".", "_").replace("@", "_")


def leftover(folder: Path, final: str, pid: int) -> Path:
    """A temp file as a writer with `pid` leaves it when killed between write and rename."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{final}.{pid}@{host_tag()}.0a1b2c3d.tmp"
    path.write_text("partial")
    return path


def plant(cache: Path, pid: int) -> list[Path]:
    """One leftover in each writer's folder: the stat memo, its file-set memo, a failed stage's log."""
    return [
        leftover(cache / "statmemo", "0123456789abcdef0123456789abcdef", pid),
        leftover(cache / "statmemo" / "sets", "fedcba9876543210fedcba9876543210", pid),
        leftover(cache / "logs" / "tiny", "build.log", pid),
    ]


def test_gc_and_the_next_build_sweep_dead_writers_temps(tiny_copy):
    cache = tiny_copy / ".trtforge-cache"
    dead = plant(cache, dead_pid())
    live = leftover(cache / "statmemo", "live0123456789abcdef0123456789ab", os.getpid())
    r = run_cli("cache", "gc", cwd=tiny_copy)
    assert r.returncode == 0, r.stderr
    assert [p for p in dead if p.exists()] == []
    assert live.exists()  # its writer (this test's process) is alive: never swept
    dead = plant(cache, dead_pid())
    r = run_cli("build", "--quiet", cwd=tiny_copy)  # a no-op build
    assert r.returncode == 0, r.stderr
    assert [p for p in dead if p.exists()] == []
    assert live.exists()


def test_verify_notes_trtforges_own_leftovers_and_fails_on_foreign_files(tiny_built, tmp_path):
    engines = tmp_path / "engines"
    shutil.copytree(tiny_built / "engines", engines)
    (target,) = [d for d in engines.iterdir() if d.is_dir()]
    top = leftover(engines, "report.json", dead_pid())
    beside = leftover(target, "tiny.engine", dead_pid())
    r = run_cli("verify", str(engines), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    notes = [ln for ln in r.stderr.splitlines() if ln.startswith("trtforge: note: ")]
    assert len(notes) == 2 and all("trtforge's own temp file" in n for n in notes), r.stderr
    assert top.name in r.stderr and beside.name in r.stderr
    assert "tiny: " in r.stdout
    doc = run_cli("verify", str(engines), "--json", cwd=tmp_path)
    assert doc.returncode == 0 and len(json.loads(doc.stdout)["notes"]) == 2
    # a temp-looking file trtforge did not write (its final name is not a published file): failed
    stranger = leftover(target, "unlisted.bin", dead_pid())
    (target / "notes.txt").write_text("foreign")
    bad = run_cli("verify", str(engines), cwd=tmp_path)
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert f"{stranger.name} is not listed" in bad.stdout and "notes.txt is not listed" in bad.stdout
    assert "2 of 3 engine(s) failed" in bad.stderr  # the two files, not the engine
