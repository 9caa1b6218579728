"""Dynamic dims vs the same module built static: export time, build time, engine size.

    .venv/bin/python bench/dynamic_vs_static.py [--out figures.json]

Each variant builds from an empty cache in its own temp project through the console script;
times are the stages' own (`trtforge build --json`), load averages are sampled around each run
(the machine may be shared: compare the pair, not absolute times)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRTFORGE = str(Path(sys.executable).parent / "trtforge")

VIT = """
[modules.vit]
factory = "examples.vit:make_vit"
inputs.image = { shape = [%s, 3, 64, 64] }
%s
"""
UNET = """
[modules.unet]
factory = "models:unet"
inputs.sample = { shape = [1, 4, %s, %s] }
inputs.timestep = { shape = [1], dtype = "int64", range = [0, 999] }
inputs.encoder_hidden_states = { shape = [1, 8, 32] }
export.opset = 21
%s
"""
VARIANTS = {
    "vit dynamic batch 1..8 (opt 4)": VIT % ('"batch"', "dims.batch = { min = 1, opt = 4, max = 8 }"),
    "vit static batch 4": VIT % ("4", ""),
    "unet dynamic latent 32..64 (opt 48)": UNET
    % (
        '"height"',
        '"width"',
        "dims.height = { min = 32, opt = 48, max = 64, multiple_of = 2 }\n"
        "dims.width = { min = 32, opt = 48, max = 64, multiple_of = 2 }",
    ),
    "unet static latent 48": UNET % ("48", "48", ""),
}


def run(manifest: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "tests" / "zoo" / "models.py", root / "models.py")
        (root / "engines.toml").write_text(manifest)
        load0 = os.getloadavg()[0]
        out = subprocess.run([TRTFORGE, "build", "--json"], cwd=root, capture_output=True, text=True)
        load1 = os.getloadavg()[0]
        if out.returncode:
            return {"error": out.stderr.strip().splitlines()[-1]}
        (m,) = json.loads(out.stdout)["modules"]
        st = m["stages"]
        return {
            "export_s": round(st["export"]["seconds"], 2),
            "build_s": round(st["build"]["seconds"], 2),
            "builder_s": st["build"]["meta"]["build_s"],
            "engine_bytes": st["build"]["meta"]["engine_bytes"],
            "verify_s": round(st["verify"]["seconds"], 2),
            "input_sets": len(st["verify"]["meta"]["input_sets"]),
            "load_1min_before_after": [round(load0, 1), round(load1, 1)],
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    figures = {}
    for name, manifest in VARIANTS.items():
        if args.only not in name:
            continue
        figures[name] = run(manifest)
        print(name, json.dumps(figures[name]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"cpus": os.cpu_count(), "figures": figures}, indent=1))


if __name__ == "__main__":
    main()
