"""Build farm: a second runner's cold build of the example manifest (3 engines) with a warm remote
cache vs without one.

Runner A builds cold and uploads to the remote; runner B (its own empty local cache, its own copy
of the project) builds cold with that remote: it downloads every record and runs no stage; runner
C builds cold with no remote (what every CI runner paid before). The remote is a real
S3-compatible server on localhost (moto_server, from the test extra) when it is installed, else a
file:// folder. One run each (a cold build of the example manifest takes minutes on 2 cores);
wall and CPU seconds of the console script, process start included, and the peak RSS of its
whole process tree (the console script and its stage processes, sampled every 50 ms).
`make bench BENCH=farm` runs it alone; `python bench/bench_farm.py [out.json]`.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "scratch" / "farm"
BIN = Path(sys.executable).parent
CMD = [str(BIN / "trtforge")]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from treepeak import _tree_rss  # noqa: E402


def project(name: str) -> Path:
    proj = WORK / name
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir(parents=True)
    shutil.copytree(REPO / "examples", proj / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "engines.toml", proj / "engines.toml")
    return proj


def _sample_peak(proc: subprocess.Popen, peak: list[int], done: threading.Event) -> None:
    """The process tree's summed RSS every 50 ms (stage children included: each stage runs in its
    own process), its maximum in peak[0]."""
    while not done.wait(0.05):
        peak[0] = max(peak[0], _tree_rss(proc.pid))


def build(proj: Path, env: dict, *args) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*CMD, "build", "engines.toml", "--json", *args],
        cwd=proj,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    peak, done = [0], threading.Event()
    sampler = threading.Thread(target=_sample_peak, args=(proc, peak, done), daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    done.set()
    sampler.join()
    proc = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"build failed in {proj}:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout)
    ran = sum(st["state"] == "ok" for m in report["modules"] for st in m["stages"].values())
    down = sum(m.get("remote", {}).get("bytes_down", 0) for m in report["modules"])
    up = sum(m.get("remote", {}).get("bytes_up", 0) for m in report["modules"])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(peak[0] / 2**20),  # the whole process tree, sampled (treepeak.py)
        "stages_run": ran,
        "mb_down": round(down / 1e6, 2),
        "mb_up": round(up / 1e6, 2),
    }


def s3_remote():
    """(env, stop) for a bucket on moto_server on a free port; None when moto is not installed."""
    moto = BIN / "moto_server"
    if not moto.exists():
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in proc.stdout:  # listening once it says so
        if "Running on" in line:
            break
    # drained from now on: a request log filling the pipe (64 KB) blocks the server's threads, and
    # every runner waits on it for ever (as tests/farm/conftest.py drains it)
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "TRTFORGE_REMOTE_CACHE": "s3://bench/farm",
    }
    import boto3

    boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ).create_bucket(Bucket="bench")
    return env, proc


def main(out: Path) -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    s3 = s3_remote()
    if s3 is not None:
        env, server = s3
        kind = "S3 (moto_server on localhost)"
    else:
        env, server = {"TRTFORGE_REMOTE_CACHE": f"file://{WORK / 'remote'}"}, None
        kind = "file:// folder"
    try:
        first = build(project("a"), env)
        warm = build(project("b"), env)
        cold = build(project("c"), {}, "--no-remote")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    doc = {
        "remote": kind,
        "first_runner_fills_remote": first,
        "second_runner_warm_remote": warm,
        "second_runner_no_remote": cold,
        "table": [
            {"figure": "runner 1 cold build, uploads (s)", "value": first["wall_s"]},
            {"figure": "runner 2 cold build, warm remote (s)", "value": warm["wall_s"]},
            {"figure": "runner 2 cold build, no remote (s)", "value": cold["wall_s"]},
            {
                "figure": "runner 2 stages run: warm remote / none",
                "value": f"{warm['stages_run']} / {cold['stages_run']}",
            },
            {"figure": "runner 2 downloaded (MB)", "value": warm["mb_down"]},
            {
                "figure": "peak RSS, runner 1 / 2 warm / 2 cold (MiB)",
                "value": f"{first['peak_rss_mib']} / {warm['peak_rss_mib']} / {cold['peak_rss_mib']}",
            },
        ],
    }
    out.write_text(json.dumps(doc, indent=1))
    for row in doc["table"]:
        print(f"{row['figure']:<44} {row['value']:>10}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "bench" / "results" / "farm.json")
