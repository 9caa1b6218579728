"""No-op `trtforge build` time: nothing changed, so deciding "all up to date" is hashing small
files and reading small records, and neither torch nor tensorrt is imported.

1. the repo's example manifest (3 engines), goal <= 0.3 s;
2. a one-module manifest whose `depends` names a 3 GB weights file, goal <= 0.5 s: its digest is
   reused while (size, mtime, ctime, inode) match, so the 3 GB are hashed once, at the first build.
The 3 GB file is sparse (a few real chunks, holes between) in bench/scratch/, which git ignores.
Each figure is the median of REPEAT runs of the console script, wall clock, process start included,
and the CPU time (user + sys) of those runs: on a loaded machine wall time includes waiting for a core.
`make bench` runs it through bench/run.py; alone: `python bench/bench_noop.py [out.json]`.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "scratch"
REPEAT = int(os.environ.get("BENCH_REPEAT", "7"))
TRTFORGE = Path(sys.executable).parent / "trtforge"
CMD = [str(TRTFORGE)] if TRTFORGE.exists() else [sys.executable, "-m", "trtforge.cli"]
WEIGHTS_BYTES = 3 * 10**9

MLP = """import torch
from torch import nn


def make_mlp(weights: str = "weights.bin"):
    torch.manual_seed(0)  # the weights file stands in for a checkpoint; only its digest matters here
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
"""

BIG_MANIFEST = """[defaults]
precision.rules = []

[modules.big]
factory = "bigmods.mlp:make_mlp"
depends = ["weights.bin"]
inputs.x = { shape = [2, 8], dtype = "float16" }
outputs = ["y"]
"""


def trtforge(*args, cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one run. On a shared machine wall time includes waiting for a core;
    the CPU time (user + sys of the child) is what the run itself costs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([*CMD, *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"trtforge {' '.join(args)} failed in {cwd}:\n{proc.stderr[-3000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def example_project() -> Path:
    proj = WORK / "example"
    proj.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        REPO / "examples", proj / "examples", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "engines.toml", proj / "engines.toml")
    return proj


def big_project() -> Path:
    proj = WORK / "big"
    (proj / "bigmods").mkdir(parents=True, exist_ok=True)
    (proj / "bigmods" / "__init__.py").write_text("")
    if not (proj / "bigmods" / "mlp.py").exists() or (proj / "bigmods" / "mlp.py").read_text() != MLP:
        (proj / "bigmods" / "mlp.py").write_text(MLP)
    (proj / "engines.toml").write_text(BIG_MANIFEST)
    weights = proj / "weights.bin"
    if not weights.exists() or weights.stat().st_size != WEIGHTS_BYTES:
        with open(weights, "wb") as f:
            f.truncate(WEIGHTS_BYTES)
            for i in range(8):  # real bytes at a few places, holes elsewhere
                f.seek(i * (WEIGHTS_BYTES // 8))
                f.write(os.urandom(1 << 20))
    return proj


def noop_times(proj: Path) -> list[tuple[float, float]]:
    first, _ = trtforge("build", "engines.toml", "--quiet", cwd=proj)  # builds, or is already a no-op
    print(f"[noop] {proj.name}: first build {first:.1f}s", file=sys.stderr)
    return [trtforge("build", "engines.toml", "--quiet", cwd=proj) for _ in range(REPEAT)]


def heavy_imports(proj: Path) -> list[str]:
    """Which heavy modules a no-op build imports (must be none)."""
    code = (
        "import sys\nfrom trtforge.cli import main\ntry:\n    main(['build', 'engines.toml', '--quiet'])\n"
        "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'tensorrt', 'tensorrt_rtx', "
        "'polygraphy', 'onnxruntime', 'onnx', 'numpy') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=proj, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"'))


def main(out: Path | None) -> None:
    doc, table = {}, []
    for name, proj, goal in (
        ("example manifest", example_project(), 0.3),
        ("3 GB weights in depends", big_project(), 0.5),
    ):
        runs = noop_times(proj)
        wall, cpu = [w for w, _ in runs], [c for _, c in runs]
        doc[name] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "wall_median_s": statistics.median(wall),
            "cpu_median_s": statistics.median(cpu),
            "goal_s": goal,
            "load_avg_1m": os.getloadavg()[0],
            "heavy_imports": heavy_imports(proj),
        }
        table += [
            {
                "figure": f"no-op build, {name}: wall median of {len(wall)} (s)",
                "value": f"{statistics.median(wall):.3f}",
                "goal": f"<= {goal}",
            },
            {
                "figure": f"no-op build, {name}: CPU user+sys (s)",
                "value": f"{statistics.median(cpu):.3f}",
                "goal": f"<= {goal}",
            },
            {
                "figure": f"no-op build, {name}: heavy imports",
                "value": ",".join(doc[name]["heavy_imports"]) or "none",
                "goal": "none",
            },
        ]
    # the first hash of the 3 GB file, for scale: what the stat memo saves on every no-op
    from trtforge.cache.keys import hash_file

    t0 = time.perf_counter()
    hash_file(WORK / "big" / "weights.bin")
    doc["sha256_3GB_s"] = time.perf_counter() - t0
    table.append(
        {"figure": "sha256 of the 3 GB weights (what the memo avoids) (s)", "value": f"{doc['sha256_3GB_s']:.2f}"}
    )
    doc["table"] = table
    text = json.dumps(doc, indent=1)
    if out is not None:
        out.write_text(text)
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
