"""Issue 25 item 4, on a machine with a GPU and onnxruntime-gpu (not part of CI): every ONNX
evaluation of the checks on the CPU and on CUDA, side by side.

    python bench/eval_devices.py engines.toml --module vit --module unet [--out cmp.json]

1. `trtforge build --until precision_rules` in a fresh cache with TRTFORGE_EVAL_DEVICE=cpu, then
   graph_passes and precision_rules again (`--force --stage graph_passes`) with auto (CUDA where it
   loads; `--builds auto` builds once): the graph_passes meaning verdicts and precision_rules' FP32
   islands of both runs, and each stage's wall.
2. verify's three ONNX checks (export and graph_passes widened to FP32, precision_rules
   FP16-faithful) on the stage folders of the last build, on each provider, with the module's own
   tolerances: verdict (and the check's reason when it fails), largest absolute error against the
   FP32 reference (NaN when an output is not finite), wall (the first input set includes session
   set-up); and the largest CPU-vs-CUDA difference of the outputs. A markdown table at the end.

On this workplace's device machine onnxruntime-gpu (1.31, CUDA 13, 256 MB) travels in pieces: the
wheel unzipped, `tar | xz -6` (204 MB), split in 4 pieces carried by consecutive calls into /tmp,
then joined, unpacked into /tmp/site and PYTHONPATH=/tmp/site:. (torch's nvidia/*/lib on
LD_LIBRARY_PATH): bench/device/*.sh. Results: bench/results/eval_devices_*.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STAGES = ("export", "graph_passes", "precision_rules")


def build_until(manifest: Path, modules: list[str], device: str, cache: Path, again: bool) -> dict:
    """`again`: the export is in `cache` already; graph_passes and precision_rules run anew."""
    env = {**os.environ, "TRTFORGE_EVAL_DEVICE": device}
    cmd = [sys.executable, "-m", "trtforge.cli", "build", str(manifest), "--until", "precision_rules", "--json"]
    cmd += ["--force", "--stage", "graph_passes"] if again else []
    cmd += [a for m in modules for a in ("--module", m)] + ["--cache-dir", str(cache)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=manifest.parent)
    wall = time.perf_counter() - t0
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise
    out: dict = {"exit": proc.returncode, "wall_s": round(wall, 2), "modules": {}}
    for m in doc["modules"]:
        st = m["stages"]
        gp = st.get("graph_passes", {}).get("meta", {})
        pr = st.get("precision_rules", {}).get("meta", {})
        out["modules"][m["name"]] = {
            "seconds": {s: st[s].get("seconds") for s in STAGES if s in st},
            "states": {s: st[s].get("state") for s in STAGES if s in st},
            "meaning": [(p["name"], p.get("check")) for p in gp.get("passes", [])],
            "fp32_islands": sorted(pr.get("fp32", {})) if isinstance(pr.get("fp32"), dict) else pr.get("fp32"),
        }
    return out


def stage_dirs(cache: Path, module: str) -> dict[str, Path]:
    """Each stage's output folder (a cache view) of the module's last run in `cache`."""
    from trtforge.cache.store import Store

    store, dirs = Store(cache), {}
    for s in STAGES:
        key = json.loads((cache / "index" / module / f"{s}.json").read_text())["key"]
        record = store.lookup(key)
        if record is None:
            raise SystemExit(f"{module}: no {s} record in {cache}")
        dirs[s] = store.view(record)
    return dirs


def _largest(d: np.ndarray) -> float:
    """The largest entry; NaN when any entry is NaN or inf (an output that overflowed)."""
    if not d.size:
        return 0.0
    return float(d.max()) if np.isfinite(d).all() else float("nan")


def onnx_checks(dirs: dict[str, Path], tol, provider: str) -> dict:
    from trtforge.artifacts import ExportFiles
    from trtforge.data.tensors import input_sets
    from trtforge.verify.onnx_check import runner
    from trtforge.verify.run import _check

    exp = dirs["export"]
    model_sets = input_sets(exp, ExportFiles.INPUTS, ExportFiles.REFERENCE)
    caller_sets = input_sets(exp, ExportFiles.CALLER_INPUTS, ExportFiles.CALLER_REFERENCE)
    plan = {
        "export": (dirs["export"], "fp32", model_sets),
        "graph_passes": (dirs["graph_passes"], "fp32", caller_sets),
        "precision_rules": (dirs["precision_rules"], "fp16", caller_sets),
    }
    res: dict = {}
    for stage, (folder, mode, sets) in plan.items():
        outs: list = []
        run = runner(folder, mode, provider)

        def keep(feeds, run=run, outs=outs):
            o = run(feeds)
            outs.append(o)
            return o

        t0 = time.perf_counter()
        check = _check(provider, keep, sets, tol)
        wall = time.perf_counter() - t0
        errs: dict = {}
        nonfinite: dict = {}
        for (_, _, ref), o in zip(sets, outs):
            for n, r in ref.items():
                a = np.asarray(o[n], np.float64)
                e = _largest(np.abs(a - np.asarray(r, np.float64)))
                errs[n] = float("nan") if np.isnan(e) or np.isnan(errs.get(n, 0.0)) else max(errs.get(n, 0.0), e)
                nonfinite[n] = nonfinite.get(n, 0) + int((~np.isfinite(a)).sum())
        res[stage] = {
            "mode": mode,
            "status": check["status"],
            "reason": check.get("reason"),
            "max_abs_err": errs,
            "nonfinite": nonfinite,
            "input_sets": len(sets),
            "wall_s": round(wall, 3),
            "outputs": outs,
        }
    return res


def _cpu_vs_cuda(cpu_outs: list, cuda_outs: list) -> dict:
    """The largest |CPU - CUDA| over the finite entries of both, and whether the two providers'
    outputs are non-finite in the same places."""
    diff, same_nonfinite = 0.0, True
    for a, b in zip(cpu_outs, cuda_outs):
        for n in a:
            x, y = np.asarray(a[n], np.float64), np.asarray(b[n], np.float64)
            both = np.isfinite(x) & np.isfinite(y)
            same_nonfinite &= bool(np.array_equal(~np.isfinite(x), ~np.isfinite(y)))
            if both.any():
                diff = max(diff, float(np.abs(x[both] - y[both]).max()))
    return {"max_abs": diff, "same_nonfinite": same_nonfinite}


def table(report: dict) -> str:
    """One markdown row per module and check."""
    rows = [
        "| module | check (mode) | CPU verdict | CUDA verdict | max err CPU | max err CUDA | max CPU-CUDA "
        "| wall CPU s | wall CUDA s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m, row in report["checks"].items():
        for s, r in row.items():
            cpu, cuda = r["cpu"], r["cuda"]
            ec, eg = max(cpu["max_abs_err"].values(), default=0.0), max(cuda["max_abs_err"].values(), default=0.0)
            if any(np.isnan(v) for v in cpu["max_abs_err"].values()):
                ec = float("nan")
            if any(np.isnan(v) for v in cuda["max_abs_err"].values()):
                eg = float("nan")
            rows.append(
                f"| {m} | {s} ({cpu['mode']}) | {cpu['status']} | {cuda['status']} | {ec:.3g} | {eg:.3g} "
                f"| {r['max_cpu_vs_cuda']['max_abs']:.3g} | {cpu['wall_s']} | {cuda['wall_s']} |"
            )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--module", action="append", required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--builds", default="cpu,auto", help="the eval devices to build with, in order (cpu,auto)")
    ap.add_argument("--cache", type=Path, help="keep the cache here (a second run hits it)")
    args = ap.parse_args()
    manifest = args.manifest.resolve()
    from trtforge import load_manifest
    from trtforge.graphs.evaluate import CPU_EP, CUDA_EP, choose_provider

    provider, why = choose_provider()
    print(f"choose_provider: {provider} ({why or 'CUDA loads'})", flush=True)
    spec = load_manifest(manifest)
    report: dict = {"provider": provider, "why_not_cuda": why, "builds": {}, "checks": {}, "tolerances": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        for i, device in enumerate(d for d in args.builds.split(",") if d):
            report["builds"][device] = build_until(manifest, args.module, device, cache, again=i > 0)
            print(device, json.dumps(report["builds"][device]), flush=True)
        for m in args.module:
            dirs = stage_dirs(cache, m)
            mod = next(x for x in spec.modules if x.name == m)
            report["tolerances"][m] = {o: mod.tolerance(o) for o in mod.outputs}
            cpu = onnx_checks(dirs, mod.tolerance, CPU_EP)
            cuda = onnx_checks(dirs, mod.tolerance, CUDA_EP)
            row = {}
            for s in STAGES:
                diff = _cpu_vs_cuda(cpu[s].pop("outputs"), cuda[s].pop("outputs"))
                row[s] = {"cpu": cpu[s], "cuda": cuda[s], "max_cpu_vs_cuda": diff}
            report["checks"][m] = row
            print(m, json.dumps(row), flush=True)
            report["table"] = table(report)
            if args.out:  # after each module: a run stopped at its time limit keeps what it did
                args.out.write_text(json.dumps(report, indent=1))
    print(report["table"], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
