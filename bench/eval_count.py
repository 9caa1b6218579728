"""Which stage evaluates which graph, in which mode, on which inputs (issue 25, item 2): one build of
a manifest through the Python API with every ONNX evaluation logged, then a table. Usage:

    python bench/eval_count.py PROJECT_DIR [--module NAME]... [--out FILE.json]

PROJECT_DIR holds engines.toml (its cache is wiped first: a cold build; --keep-cache keeps it, so
only the stages whose key changed run, e.g. verify after a change to the verify stage). The log is written by the
forked stage children (they inherit the patched evaluator): one JSON line per evaluation with the
stage (from the call stack), the mode, a digest of the graph's structure (nodes, inputs, outputs,
initializer names: weight files differ between stages, their contents do not), a digest of the
feeds, the nodes run, and the wall. `joint` rows are graph_passes' incremental sweeps (the graph
before whole, the graph after only where it differs); `whole` rows are small graphs run in one
session (every node counted)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

STAGES = ("graph_passes", "precision_rules", "verify", "pipelines", "driver")


def _stage() -> str:
    f = sys._getframe(2)
    while f is not None:
        name = f.f_globals.get("__name__", "")
        for s in STAGES:
            if name.startswith(f"trtforge.{s}"):
                return s
        f = f.f_back
    return "?"


def _graph_digest(model) -> str:
    g = model.graph
    h = hashlib.sha256()
    for n in g.node:
        h.update(n.SerializeToString())
    for vi in (*g.input, *g.output):
        h.update(vi.name.encode())
    for t in g.initializer:
        h.update(t.name.encode() + bytes(str(list(t.dims)), "ascii"))
    return h.hexdigest()[:10]


def _feeds_digest(feeds: dict) -> str:
    import numpy as np

    h = hashlib.sha256()
    for k in sorted(feeds):
        a = np.ascontiguousarray(np.asarray(feeds[k]))
        h.update(k.encode() + a.dtype.str.encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:10]


def install(log: Path) -> None:
    """Patch the evaluator (in this process; forked stage children inherit it)."""
    from trtforge.graph_passes import incremental
    from trtforge.graphs.evaluate import Evaluator

    def write(row: dict) -> None:
        with open(log, "a") as f:
            f.write(json.dumps(row) + "\n")

    orig_run = Evaluator.run

    def run(self, feeds, keep=(), observe=None):
        stage = _stage()
        t0 = time.perf_counter()
        try:
            return orig_run(self, feeds, keep=keep, observe=observe)
        finally:
            write(
                {
                    "stage": stage,
                    "kind": "whole" if self.mode == "fp32" and not keep and observe is None and self.small else "run",
                    "mode": self.mode,
                    "graph": _graph_digest(self.model),
                    "feeds": _feeds_digest(feeds),
                    "nodes": len(self.nodes),
                    "nodes_run": self.nodes_run,
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )

    orig_joint = incremental.evaluate_jointly

    def joint(before, after, weights, feeds, sessions=None, observe_before=None):
        t0 = time.perf_counter()
        res = orig_joint(before, after, weights, feeds, sessions=sessions, observe_before=observe_before)
        write(
            {
                "stage": "graph_passes",
                "kind": "joint",
                "mode": "fp32",
                "graph": _graph_digest(before),
                "after": _graph_digest(after),
                "feeds": _feeds_digest(feeds),
                "nodes": res.nodes_total,
                "nodes_run": res.nodes_before,
                "after_nodes_run": res.nodes_after,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        return res

    Evaluator.run = run
    incremental.evaluate_jointly = joint


def table(rows: list[dict], names: dict[str, str]) -> list[str]:
    lines = ["| stage | graph | mode | feeds | kind | nodes run / nodes | s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        g = names.get(r["graph"], r["graph"])
        if r["kind"] == "joint":
            g = f"{g} whole + {names.get(r['after'], r['after'])} region ({r['after_nodes_run']} nodes)"
        lines.append(
            f"| {r['stage']} | {g} | {r['mode']} | {r['feeds']} | {r['kind']} | {r['nodes_run']} / {r['nodes']} "
            f"| {r['seconds']} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("project", type=Path)
    ap.add_argument("--module", action="append", default=[])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep-cache", action="store_true", help="not cold: stages whose key held stay cached")
    ap.add_argument("--force-from", help="with --keep-cache: run this stage and later ones again")
    args = ap.parse_args()
    proj = args.project.resolve()
    if not args.keep_cache:
        shutil.rmtree(proj / ".trtforge-cache", ignore_errors=True)
    shutil.rmtree(proj / "engines", ignore_errors=True)
    log = proj / "evaluations.jsonl"
    log.unlink(missing_ok=True)
    sys.path.insert(0, str(proj))
    os.chdir(proj)
    install(log)
    import trtforge

    t0 = time.perf_counter()
    outcome = trtforge.build(proj / "engines.toml", modules=args.module, force_from=args.force_from)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    # name the graphs by the stage folder whose model.onnx has that structure
    from trtforge.graphs.files import load_graph_proto

    names: dict[str, str] = {}
    stages: dict = {}
    for res in outcome.results:
        for stage in ("export", "graph_passes", "precision_rules"):
            rec = res.records.get(stage)
            if rec is None:
                continue
            folder = proj / ".trtforge-cache" / "views" / rec.key
            if (folder / "model.onnx").exists():
                names.setdefault(_graph_digest(load_graph_proto(folder)), f"{res.name}:{stage}")
        stages[res.name] = {
            s: {"state": st.state, "seconds": round(st.seconds or 0.0, 2), "peak_rss_mib": st.meta.get("peak_rss_mib")}
            for s, st in res.stages.items()
        }
        verify = res.records.get("verify")
        if verify is not None:
            stages[res.name]["verify_checks"] = {
                s: {"status": c["status"], "seconds": c.get("seconds"), "reason": c.get("reason", "")[:120]}
                for s, c in verify.meta.get("checks", {}).items()
            }
    dup = Counter((r["graph"], r["mode"], r["feeds"]) for r in rows)
    repeated = {f"{names.get(g, g)} {m} {f}": n for (g, m, f), n in dup.items() if n > 1}
    print("\n".join(table(rows, names)))
    print(f"evaluations: {len(rows)}; repeated (graph, mode, feeds): {repeated or 'none'}; build wall {wall:.1f} s")
    print(json.dumps(stages, indent=1))
    if args.out:
        args.out.write_text(
            json.dumps(
                {"wall_s": round(wall, 1), "evaluations": rows, "names": names, "repeated": repeated, "stages": stages},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
