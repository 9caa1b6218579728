"""A model over 2 GB must simply work (ONNX external data end to end). Too slow and too large in
memory for the test suite, so it is a benchmark: `python bench/big_model.py [--gib 2.1]`.

The model is one MatMul with a [M, 1024] FP16 weight (M chosen for the size asked): 2.1 GiB of
weights for 1 GMAC of compute, so export, parse and build time are dominated by the weights.
Writes bench/results/big_model.json with the stage timings and the engine size."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRTFORGE = str(Path(sys.executable).parent / "trtforge")
K = 1024

MODEL = """
import torch
from torch import nn


class Big(nn.Module):
    def __init__(self, rows: int):
        super().__init__()
        w = torch.empty(rows, {k}, dtype=torch.float16)
        w.uniform_(-0.03, 0.03)
        self.weight = nn.Parameter(w, requires_grad=False)

    def forward(self, x):
        return x @ self.weight.t()


def make_big(rows: int):
    return Big(rows)
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.1, help="weight size in GiB")
    args = ap.parse_args()
    rows = int(args.gib * (1 << 30) / 2 / K)
    with tempfile.TemporaryDirectory(prefix="trtforge-big-") as tmp:
        root = Path(tmp)
        (root / "big_model.py").write_text(MODEL.replace("{k}", str(K)))
        (root / "engines.toml").write_text(
            f'[modules.big]\nfactory = "big_model:make_big"\nfactory_args = {{ rows = {rows} }}\n'
            f"inputs.x = {{ shape = [1, {K}] }}\nprecision.rules = []\n"
        )
        t0 = time.perf_counter()
        r = subprocess.run(
            [TRTFORGE, "build", "--json"],
            cwd=root,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        wall = time.perf_counter() - t0
        result = {"weights_gib": round(rows * K * 2 / (1 << 30), 3), "exit": r.returncode, "wall_s": round(wall, 1)}
        if r.stdout.strip():
            mod = json.loads(r.stdout)["modules"][0]
            result["error"] = mod["error"]
            result["stages_s"] = {s: v["seconds"] for s, v in mod["stages"].items()}
            result["engine_bytes"] = mod["stages"]["build"]["meta"].get("engine_bytes")
            result["verify_passed"] = mod["stages"]["verify"]["meta"].get("passed")
        else:
            result["stderr_tail"] = r.stderr[-2000:]
    out = REPO / "bench" / "results" / "big_model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if result["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
