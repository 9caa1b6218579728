"""Run a command and report its wall time and the peak RSS of its whole process tree (sampled from
/proc every 50 ms, summed over the tree) beside the largest single process (the kernel's own
ru_maxrss of waited-for children). Used by bench_big.py; no third-party package needed."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path


def _tree_rss(root: int) -> int:
    kids: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            kids.setdefault(int(fields[1]), []).append(int(d.name))
            rss[int(d.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(kids.get(pid, []))
    return total


def run(cmd: list[str], log: Path, env: dict | None = None, cwd: str | None = None) -> dict:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {
        "rc": proc.returncode,
        "wall_s": round(wall, 1),
        "tree_peak_gib": round(peak / 2**30, 2),
        "max_single_gib_so_far": round(single / 2**30, 2),
    }
