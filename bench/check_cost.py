"""What the graph_passes stage's meaning checks cost on one exported module: nodes evaluated and
wall, for the ways the checks can run (issue 25). Usage:

    python bench/check_cost.py EXPORT_FOLDER [--repeat N]

EXPORT_FOLDER is an export stage's output (model.onnx, its weights, inputs.npz), e.g. a module's
folder under the cache's views/. Modes: `per_pass` checks each pass with full evaluations (small
models' default), `end_to_end_full` checks the run of passes with two full evaluations (big
models' default before issue 25), `end_to_end_incremental` evaluates the graph before fully and
the graph after only where it differs (big models' default now), `default` is what the stage
does for this model now (by its weight size)."""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from trtforge.graph_passes.run import recorded_inputs, run_pipeline

DEFAULT = [
    {"name": n}
    for n in ("legalize_dtypes", "fold_constants", "fold_static_shapes", "remove_identities", "cleanup", "toposort")
]
MODES = {
    "per_pass": dict(end_to_end=False, incremental=False),
    "end_to_end_full": dict(end_to_end=True, incremental=False),
    "end_to_end_incremental": dict(end_to_end=True, incremental=True),
    "default": dict(end_to_end=None, incremental=None),  # what the stage does for this model
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--mode", choices=list(MODES), action="append")
    args = ap.parse_args()
    rows = []
    for mode in args.mode or list(MODES):
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as work:
                t0 = time.perf_counter()
                meta = run_pipeline(
                    args.folder,
                    Path(work),
                    DEFAULT,
                    check="each",
                    recorded=recorded_inputs(args.folder),
                    **MODES[mode],
                )
                wall = time.perf_counter() - t0
            rows.append(
                {
                    "mode": mode,
                    "nodes": meta["nodes_before"],
                    "nodes_evaluated": meta["check_nodes_evaluated"],
                    "wall_s": round(wall, 2),
                    "verdicts": [p["check"] for p in meta["passes"] if p["modified"]],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (all modes, one process)")


if __name__ == "__main__":
    main()
