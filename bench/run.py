"""`make bench`: run every bench/bench_*.py script, each writing bench/results/<name>.json, then
merge them into bench/results.json and print one table. Benchmarks, not tests: figures, not verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    merged, failed = {}, []
    only = sys.argv[1:]
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        rc = subprocess.call([sys.executable, str(script), str(out_dir / f"{name}.json")])
        if rc != 0:
            failed.append(name)
            continue
        merged[name] = json.loads((out_dir / f"{name}.json").read_text())
    (HERE / "results.json").write_text(json.dumps(merged, indent=1))
    print(f"\n{'bench':<14} {'figure':<44} {'value':>12} {'goal':>10}")
    for name, doc in merged.items():
        for row in doc.get("table", []):
            goal = row.get("goal", "")
            print(f"{name:<14} {row['figure']:<44} {row['value']:>12} {goal:>10}")
    print(f"\nwritten: {HERE / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
