"""`make bench-big` (not part of CI): SD1.5- and SDXL-size diffusers UNets (public configs, random
init, nothing downloaded) through the plain path and through trtforge, in the same run, with the
wall time and peak RSS of each process tree and trtforge's per-stage figures.

    python bench/big_unets.py [sd15] [sdxl]      -> bench/results/big_unets.json

Plain path = `model.half()` + `torch.onnx.export(dynamo=True, external_data=True)` (one process),
then a polygraphy TensorRT-RTX build (a second process). trtforge = `trtforge build` of a manifest
with default settings but the module's inputs, on an empty cache. Goals (issue 25): trtforge's
wall <= 1.5x plain export + plain build, peak <= 1.05x the plain path's. Where the plain export
cannot be built (SDXL), trtforge's build stage stands in for the plain build ("plain_build_used")."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from treepeak import run  # noqa: E402
from unets import INPUTS  # noqa: E402

PY = sys.executable
TRTFORGE = str(Path(sys.executable).parent / "trtforge")
RANGES = {"timestep": [1.0, 999.0], "time_ids": [0.0, 1024.0]}


def manifest(model: str) -> str:
    lines = [f"[modules.unet_{model}]", 'factory = "unets:make_unet"', f'factory_args = {{ config = "{model}" }}']
    for name, shape in INPUTS[model].items():
        lo, hi = RANGES.get(name, [-1.0, 1.0])
        lines.append(f'inputs.{name} = {{ shape = {shape}, dtype = "float16", range = [{lo}, {hi}] }}')
    lines.append('outputs = ["noise"]')
    return "\n".join(lines) + "\n"


def trtforge_path(model: str, scratch: Path) -> dict:
    proj = scratch / f"trtforge_{model}"
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir(parents=True)
    shutil.copy(HERE / "unets.py", proj / "unets.py")
    (proj / "engines.toml").write_text(manifest(model))
    res = run([TRTFORGE, "build", "engines.toml", "--json"], scratch / f"trtforge_{model}.log", cwd=str(proj))
    report = json.loads((proj / "engines" / "report.json").read_text())
    mod = report["modules"][0]
    res["ok"], res["error"] = mod["ok"], mod["error"]
    res["stages"] = {
        s: {
            "state": st["state"],
            "wall_s": round(st["seconds"], 1),
            "peak_gib": round(st["meta"].get("peak_rss_mib", 0) / 1024, 2),
        }
        for s, st in mod["stages"].items()
    }
    res["published"] = mod["published"]
    return res


def one(model: str, scratch: Path) -> dict:
    plain_dir = scratch / f"plain_{model}"
    shutil.rmtree(plain_dir, ignore_errors=True)
    out = {"plain": {}}
    for phase in ("export", "build"):
        print(f"[{model}] plain {phase} ...", flush=True)
        out["plain"][phase] = run(
            [PY, str(HERE / "plain_path.py"), phase, model, str(plain_dir)], scratch / f"plain_{model}_{phase}.log"
        )
        print(f"[{model}] plain {phase}: {out['plain'][phase]}", flush=True)
    shutil.rmtree(plain_dir, ignore_errors=True)  # its 2-10 GB must not sit in the page cache's way
    print(f"[{model}] trtforge build ...", flush=True)
    out["trtforge"] = trtforge_path(model, scratch)
    print(f"[{model}] trtforge: {json.dumps(out['trtforge'])}", flush=True)
    plain = out["plain"]
    build = baseline_build(plain["build"], out["trtforge"], scratch / f"plain_{model}_build.log")
    out["plain_build_used"] = build
    if build["source"] != "plain":
        print(f"[{model}] plain build failed ({build['plain_error']}); dividing by {build['source']}", flush=True)
    export_build = plain["export"]["wall_s"] + build["wall_s"]
    path_peak = max(plain["export"]["tree_peak_gib"], build["tree_peak_gib"])
    out["ratios"] = {
        "peak_vs_plain_export": round(out["trtforge"]["tree_peak_gib"] / plain["export"]["tree_peak_gib"], 2),
        "peak_vs_plain_path": round(out["trtforge"]["tree_peak_gib"] / path_peak, 2),
        "wall_vs_plain_export_plus_build": round(out["trtforge"]["wall_s"] / export_build, 2),
    }
    return out


def baseline_build(plain_build: dict, trtforge: dict, log: Path) -> dict:
    """The plain build the ratios divide by. Where polygraphy cannot build the plain export (SDXL:
    its text_time Concat mixes FP16 and FP32 inputs, which the parser refuses), the plain path has
    no build to time: trtforge's own build stage of the same UNet stands in (the same TensorRT-RTX
    call on the fixed graph), and the result says so instead of dividing by a 1 s failure."""
    if plain_build["rc"] == 0:
        return {**plain_build, "source": "plain"}
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    # the parser's first "[E]" line names the node; the traceback's last line only polygraphy's check
    why = next((ln.strip() for ln in lines if ln.startswith("[E]")), lines[-1] if lines else "")
    stage = trtforge["stages"].get("build", {})
    return {
        "source": "trtforge build stage (the plain build failed)",
        "plain_error": why[:300],
        "wall_s": stage.get("wall_s", 0.0),
        "tree_peak_gib": stage.get("peak_gib", 0.0),
    }


def trtforge_commit() -> str:
    """The commit of the trtforge the console script imports (PYTHONPATH may point at another
    checkout, for a before/after pair in one session)."""
    import subprocess

    where = subprocess.run(
        [PY, "-c", "import os, trtforge; print(os.path.dirname(os.path.dirname(trtforge.__file__)))"],
        capture_output=True,
        text=True,
        cwd="/",  # not this checkout: `python -c` puts the working folder first on sys.path
    ).stdout.strip()
    head = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return head.stdout.strip() or "unknown"


def main() -> int:
    models = sys.argv[1:] or ["sd15", "sdxl"]
    # BENCH_TAG: store under "<model>@<tag>" (a before/after pair keeps both)
    tag = os.environ.get("BENCH_TAG")
    scratch = HERE / "scratch" / "big"
    scratch.mkdir(parents=True, exist_ok=True)
    results_path = HERE / "results" / "big_unets.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for model in models:
        name = f"{model}@{tag}" if tag else model
        results[name] = one(model, scratch)
        results[name]["trtforge_commit"] = trtforge_commit()
        results[name]["machine"] = {
            "cpus": os.cpu_count(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        }
        results_path.write_text(json.dumps(results, indent=1))
        print(json.dumps(results[name]["ratios"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
