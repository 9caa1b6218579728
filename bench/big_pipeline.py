"""`make bench-big` (not part of CI): the text-to-image pipeline of examples/txt2img.py at SD1.5
size (CLIP ViT-L text encoder, SD1.5 UNet, SD1.5 VAE decoder; public configs, random init, nothing
downloaded), 4 DDIM steps with classifier-free guidance, through `trtforge build` on an empty
cache: the wall time and peak RSS of each module's stages beside the pipeline check's (reference
run, published run on the FP16-faithful evaluator, crossovers if it fails).

    python bench/big_pipeline.py [sd15|tiny]     -> bench/results/big_pipeline.json

`tiny` is the same script at the example's size (a minute): proof that it works, for CI-less
machines. SD1.5 size needs ~20 GiB free and a long while on a CPU; run it on a quiet machine.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from treepeak import run  # noqa: E402

TRTFORGE = str(Path(sys.executable).parent / "trtforge")
# (text length, vocabulary, text width, latent size) per size: the modules' input shapes follow
SIZES = {"tiny": (16, 1000, 32, 8), "sd15": (77, 49408, 768, 64)}


def manifest(size: str, steps: int = 4) -> str:
    n, vocab, width, lat = SIZES[size]
    return f"""\
[modules.text_encoder]
factory = "txt2img:make_text_encoder"
factory_args = {{ size = "{size}" }}
inputs.input_ids = {{ shape = [2, {n}], dtype = "int64", kind = "token_ids", vocab_size = {vocab} }}
outputs = ["hidden"]

[modules.unet]
factory = "txt2img:make_unet"
factory_args = {{ size = "{size}" }}
inputs.sample = {{ shape = [2, 4, {lat}, {lat}], dtype = "float16", dist = "normal" }}
inputs.timestep = {{ shape = [2], dtype = "int64", kind = "token_ids", vocab_size = 1000 }}
inputs.encoder_hidden_states = {{ shape = [2, {n}, {width}], dtype = "float16", dist = "normal" }}
outputs = ["noise_pred"]

[modules.vae_decoder]
factory = "txt2img:make_vae_decoder"
factory_args = {{ size = "{size}" }}
inputs.latents = {{ shape = [1, 4, {lat}, {lat}], dtype = "float16", dist = "normal" }}
outputs = ["image"]

[pipelines.txt2img]
modules = ["text_encoder", "unet", "vae_decoder"]
runner = "txt2img:generate"
runner_args = {{ steps = {steps}, guidance = 7.5 }}
inputs.prompt_ids = {{ shape = [1, {n}], dtype = "int64", kind = "token_ids", vocab_size = {vocab} }}
inputs.uncond_ids = {{ shape = [1, {n}], dtype = "int64", value = 0 }}
inputs.latents = {{ shape = [1, 4, {lat}, {lat}], dtype = "float32", dist = "normal" }}
outputs.image = {{ metric = "psnr", min_psnr = 30 }}
"""


def one(size: str, scratch: Path) -> dict:
    proj = scratch / f"pipeline_{size}"
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "txt2img.py", proj / "txt2img.py")
    (proj / "engines.toml").write_text(manifest(size))
    print(f"[{size}] trtforge build (3 modules + the pipeline check) ...", flush=True)
    res = run([TRTFORGE, "build", "engines.toml"], scratch / f"pipeline_{size}.log", cwd=str(proj))
    report = json.loads((proj / "engines" / "report.json").read_text())
    res["modules"] = {
        m["name"]: {
            s: {"wall_s": round(st["seconds"], 1), "peak_gib": round(st["meta"].get("peak_rss_mib", 0) / 1024, 2)}
            for s, st in m["stages"].items()
        }
        for m in report["modules"]
    }
    (pipe,) = report.get("pipelines", [{}])
    res["pipeline"] = {
        "state": pipe.get("state"),
        "reason": pipe.get("reason"),
        "wall_s": pipe.get("seconds"),
        "peak_gib": round(pipe.get("peak_rss_kib", 0) / 2**20, 2),
        "outputs": pipe.get("outputs"),
        "unet_rel_l2_per_step": [
            max(o["rel_l2"] for o in c["outputs"].values()) for c in (pipe.get("series") or {}).get("unet", [])
        ],
    }
    return res


def main() -> int:
    sizes = sys.argv[1:] or ["sd15"]
    scratch = HERE / "scratch" / "big"
    scratch.mkdir(parents=True, exist_ok=True)
    results_path = HERE / "results" / "big_pipeline.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for size in sizes:
        results[size] = one(size, scratch)
        results[size]["machine"] = {
            "cpus": os.cpu_count(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        }
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))
        print(json.dumps({size: {k: results[size][k] for k in ("wall_s", "pipeline") if k in results[size]}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
