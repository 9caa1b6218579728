"""`make bench`: run every bench script in this folder and collect what they measured.

Each script `bench/<name>.py` (not this one, not `_*.py`) runs as its own process with this
checkout on PYTHONPATH. A script reports by printing one JSON object as its last stdout line:
    {"results": [{"name": ..., "value": ..., "unit": "s", "goal": ... or null}, ...]}
Everything lands in bench/results.json (script -> its results, exit status, wall time) and a table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def scripts() -> list[Path]:
    only = set(sys.argv[1:])
    return [p for p in sorted(HERE.glob("*.py"))
            if p.name != "run.py" and not p.name.startswith("_") and (not only or p.stem in only)]


def run_one(script: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True)
    out = {"returncode": proc.returncode, "wall_s": round(time.perf_counter() - t0, 2), "results": []}
    lines = proc.stdout.strip().splitlines()
    try:
        out["results"] = json.loads(lines[-1])["results"]
    except (IndexError, ValueError, KeyError, TypeError):
        out["error"] = (proc.stderr or proc.stdout)[-2000:]
    if proc.returncode:
        out["error"] = proc.stderr[-2000:]
    return out


def table(all_results: dict) -> str:
    rows = [("script", "measure", "value", "goal", "met")]
    for script, res in all_results.items():
        if not res["results"]:
            rows.append((script, "FAILED" if res["returncode"] else "(no results)", "", "", ""))
        for r in res["results"]:
            goal = r.get("goal")
            met = "" if goal is None else ("yes" if r["value"] <= goal else "NO")
            rows.append((script, r["name"], f"{r['value']:.3f} {r.get('unit', '')}",
                         "" if goal is None else f"<= {goal} {r.get('unit', '')}", met))
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows)


def main() -> int:
    results = {}
    for script in scripts():
        print(f"[bench] {script.name} ...", file=sys.stderr, flush=True)
        results[script.stem] = run_one(script)
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    print(f"written {HERE / 'results.json'}")
    return 1 if any(r["returncode"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
