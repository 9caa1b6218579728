"""Issue 25 item 4, on a machine with a GPU and onnxruntime-gpu (not part of CI): every ONNX
evaluation of the checks on the CPU and on CUDA, side by side.

    python bench/eval_devices.py engines.toml --module vit --module unet [--out cmp.json]

1. `trtforge build --until precision_rules` twice, each in a fresh cache, with
   TRTFORGE_EVAL_DEVICE=cpu and then auto (CUDA where it loads): the graph_passes meaning verdicts
   and precision_rules' FP32 islands of both runs, and each stage's wall.
2. verify's three ONNX checks (export and graph_passes widened to FP32, precision_rules
   FP16-faithful) on the stage folders of the CUDA run, on each provider, with the module's own
   tolerances: verdict, largest absolute error against the FP32 reference, wall (the first input
   set includes session set-up); and the largest CPU-vs-CUDA difference of the outputs.

On this workplace's device machine onnxruntime-gpu (1.31, CUDA 13, 256 MB) travels in pieces: the
wheel unzipped, `tar | xz -6` (204 MB), split in 4 pieces carried by consecutive calls into /tmp,
then joined, unpacked into /tmp/site and PYTHONPATH=/tmp/site:. (torch's nvidia/*/lib on
LD_LIBRARY_PATH). Not yet run there: no machine could be had (issue 25 item 4's report).
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


def build_until(manifest: Path, modules: list[str], device: str, cache: Path) -> dict:
    env = {**os.environ, "TRTFORGE_EVAL_DEVICE": device}
    cmd = [sys.executable, "-m", "trtforge.cli", "build", str(manifest), "--until", "precision_rules", "--json"]
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
        errs = {}
        for (_, _, ref), o in zip(sets, outs):
            for n, r in ref.items():
                d = np.abs(o[n].astype(np.float64) - np.asarray(r, np.float64))
                errs[n] = max(errs.get(n, 0.0), float(np.nanmax(d)) if np.isfinite(d).all() else float("nan"))
        res[stage] = {"status": check["status"], "max_abs_err": errs, "wall_s": round(wall, 3), "outputs": outs}
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--module", action="append", required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--caches", type=Path, help="keep the two caches here (a second run hits them)")
    args = ap.parse_args()
    manifest = args.manifest.resolve()
    from trtforge import load_manifest
    from trtforge.graphs.evaluate import CPU_EP, CUDA_EP, choose_provider

    provider, why = choose_provider()
    print(f"choose_provider: {provider} ({why or 'CUDA loads'})", flush=True)
    spec = load_manifest(manifest)
    report: dict = {"provider": provider, "builds": {}, "checks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        caches = {d: (args.caches or Path(tmp)) / d for d in ("cpu", "auto")}
        for device, cache in caches.items():
            report["builds"][device] = build_until(manifest, args.module, device, cache)
            print(device, json.dumps(report["builds"][device]), flush=True)
        for m in args.module:
            dirs = stage_dirs(caches["auto"], m)
            tol = next(x for x in spec.modules if x.name == m).tolerance
            cpu = onnx_checks(dirs, tol, CPU_EP)
            cuda = onnx_checks(dirs, tol, CUDA_EP)
            row = {}
            for s in STAGES:
                diff = 0.0
                for a, b in zip(cpu[s].pop("outputs"), cuda[s].pop("outputs")):
                    for n in a:
                        d = np.abs(a[n].astype(np.float64) - b[n].astype(np.float64))
                        diff = max(diff, float(np.nanmax(d)) if np.isfinite(d).any() else float("nan"))
                row[s] = {"cpu": cpu[s], "cuda": cuda[s], "max_cpu_vs_cuda": diff}
            report["checks"][m] = row
            print(m, json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
