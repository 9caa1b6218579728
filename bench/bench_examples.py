"""Cold build time per stage per example module, and the no-op rebuild of the example manifest
(goal: under 0.5 s, and no torch/TensorRT import)."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRTFORGE = str(Path(sys.executable).parent / "trtforge")


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "engines.toml", root / "engines.toml")
        t0 = time.perf_counter()
        cold = subprocess.run([TRTFORGE, "build", "--json"], cwd=root, capture_output=True, text=True)
        cold_s = time.perf_counter() - t0
        if cold.returncode != 0:
            sys.exit(f"cold build failed: {cold.stderr}")
        report = json.loads(cold.stdout)
        noop = []
        for _ in range(7):
            t0 = time.perf_counter()
            subprocess.run([TRTFORGE, "build", "--quiet"], cwd=root, check=True)
            noop.append(time.perf_counter() - t0)
    per_stage = {m["name"]: {s: v["seconds"] for s, v in m["stages"].items()} for m in report["modules"]}
    table = [
        {
            "figure": "no-op `trtforge build` wall, median of 7 (s)",
            "value": f"{statistics.median(noop):.3f}",
            "goal": "<= 0.5",
        },
        {"figure": "cold build of 3 examples, wall (s)", "value": f"{cold_s:.1f}"},
    ]
    for mod, stages in per_stage.items():
        for stage, sec in stages.items():
            table.append({"figure": f"cold {mod} {stage} (s)", "value": f"{sec:.2f}"})
    out_doc = {
        "noop_s": noop,
        "noop_median_s": statistics.median(noop),
        "cold_total_s": cold_s,
        "cold_stage_s": per_stage,
        "table": table,
    }
    Path(sys.argv[1]).write_text(json.dumps(out_doc, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
