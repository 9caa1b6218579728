"""The manifest's cache key material, pinned: every module of the example manifest (engines.toml)
and of a manifest that sets every key away from its default resolves to the key material recorded
in key_snapshot.json (recorded before trtforge/manifest.py became a package, issue 26).

A change here changes cache keys: every user's cache misses once. If it is meant, say so in the
commit and rerun this file with TRTFORGE_RECORD_KEY_SNAPSHOT=1 to record the new material.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tests.conftest import REPO
from trtforge.export import ExportStage
from trtforge.graph_passes import GraphPassesStage
from trtforge.manifest import load_manifest, parse_manifest, settings_dict
from trtforge.manifest.targets import for_target
from trtforge.precision_rules import PrecisionStage
from trtforge.verify import VerifyStage

SNAPSHOT = Path(__file__).with_name("key_snapshot.json")

# every key away from its default: targets, pipelines, per-output checks, dims, renames, ...
RICH = """
[defaults]
export = { exporter = "dynamo", opset = 18, forbid_fp32_islands = true }
verify = { atol = 0.05, seed = 7, random_inputs = 2, shapes = 3 }
build = { optimization_level = 4, workspace_mib = 2048 }
pass_check = "pipeline"
cache_dir = "cache"
output_dir = "out"

[modules.enc]
factory = "pkg.enc:make"
factory_args = { width = 8, weights = "w/enc.bin", scale = 0.5 }
factory_paths = ["weights"]
method = "encode"
inputs.x = { shape = ["batch", 3, 16, 16], dtype = "float32", range = [0.0, 2.0], arg = "pixels" }
inputs.ids = { shape = ["batch", 12], dtype = "int64", kind = "token_ids", vocab_size = 500 }
inputs.mask = { shape = ["batch", 12], dtype = "int64", kind = "padding_mask", pad = [0, 2], side = "left" }
dims.batch = { min = 1, opt = 2, max = 4 }
outputs = { sample = "latent", aux = "extra" }
depends = ["pkg/*.py"]
export = { expected_fp32_islands = ["diffusers", "pkg.norm"] }
passes = ["fold_constants", { name = "cleanup" }, "toposort"]
precision = { realizer = "casts", rules = [{ rule = "op_type", ops = ["Softmax"] }, "attention_score"] }
build = { backend = "tensorrt-rtx", rtx_compute_capabilities = ["8.9", "8.6"] }
verify = { rtol = 0.1, max_outside = 0.01, min_cosine = 0.99, input_sets = ["samples/*.npz"], outputs = { \
latent = { atol = 0.2, valid = "mask", constant_ok = true }, extra = { metric = "topk", k = 3, min_topk = 0.5 } } }

[modules.dec]
factory = "pkg.dec:make"
checkpoint = "ckpt/dec"
profiles = [{ n = { min = 2, opt = 2, max = 2, multiple_of = 2 } }, { n = { min = 2, opt = 4, max = 8, multiple_of = 2 } }]
inputs.z = { shape = ["n", 4, 8, 8], dist = "normal", mean = 0.5, std = 2.0 }
outputs = ["image", "depth"]
export = { exporter = "dynamo" }
precision = { realizer = "auto" }
verify.outputs.image = { metric = "psnr", min_psnr = 25, peak = 2.0 }
verify.outputs.depth = { metric = "iou", mask = "argmax", axis = 1, min_iou = 0.8 }

[modules.plain]
factory = "pkg.plain:make"
inputs.x = { shape = [1, 3], value = 1.5 }
export = { exporter = "torchscript", opset = 17 }
pass_check = "off"
build = { backend = "tensorrt" }

[targets.ampere]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.0", "8.6"]
optimization_level = 5

[targets.h100]
backend = "tensorrt"
gpu = "H100"
workspace_mib = 8192
timing_cache = false

[cache]
remote = "s3://bucket/prefix"
read_only = true
options = { region = "eu", anon = false }

[pipelines.flow]
modules = ["enc", "plain"]
runner = "pkg.flow:run"
runner_args = { steps = 3, guidance = 2.5 }
seed = 11
inputs.noise = { shape = [1, 4], dtype = "float32", dist = "normal" }
outputs.out = { atol = 0.3 }
outputs.tok = { metric = "sequence", min_match = 0.75 }
outputs.img = { metric = "psnr" }
"""

# stage key material that comes from the manifest alone (tool versions, library and file
# digests and the GPUs present are left out: they depend on the machine, not the manifest)
STAGE_KEYS = {
    ExportStage(): ("module", "io_transforms", "input_sets"),
    GraphPassesStage(): ("passes", "check"),
    PrecisionStage(): ("rules", "realizer"),
    VerifyStage(): ("verify", "verify_outputs"),
}


def _json(value):
    return json.loads(json.dumps(value, sort_keys=True))  # tuples as lists, as the cache key's JSON


def _module_material(manifest, module, stages: bool) -> dict:
    out: dict = {"as_key": module.as_key()}
    for part in ("export", "build", "precision", "verify"):
        out[part] = settings_dict(getattr(module, part))
    out["tolerances"] = {o: module.tolerance(o) for o in (*module.outputs, "unlisted")}
    out["targets"] = {t.name: for_target(module, t).as_key() for t in manifest.targets}
    if stages:
        for stage, keys in STAGE_KEYS.items():
            material = stage.key_material(module, manifest.root)
            out[stage.name] = {k: material[k] for k in keys if k in material}
    return out


def _material(manifest, stages: bool) -> dict:
    return _json(
        {
            "modules": {m.name: _module_material(manifest, m, stages) for m in manifest.modules},
            "pipelines": {p.name: p.as_key() for p in manifest.pipelines},
            "targets": {t.name: dataclasses.asdict(t) for t in manifest.targets},
            "cache": manifest.cache,
            "top": {
                "cache_dir": Path(manifest.cache_dir).name,
                "output_dir": Path(manifest.output_dir).name,
                "allow_foreign_files": manifest.allow_foreign_files,
            },
        }
    )


def current(tmp_path: Path) -> dict:
    rich = tmp_path / "engines.toml"
    rich.write_text(RICH)
    return {
        "engines.toml": _material(load_manifest(REPO / "engines.toml"), stages=True),
        "rich": _material(parse_manifest(RICH, rich), stages=False),
    }


def test_key_material_is_the_recorded_one(tmp_path):
    now = current(tmp_path)
    if os.environ.get("TRTFORGE_RECORD_KEY_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(SNAPSHOT.read_text())
    for name in recorded:
        for module, material in recorded[name]["modules"].items():
            assert now[name]["modules"][module] == material, f"{name}: module {module}'s key material changed"
    assert now == recorded


def test_the_snapshot_covers_every_setting():
    """The rich manifest sets every settings field away from its default, so a field whose key
    material changed would show (a field left at its default could hide behind it)."""
    recorded = json.loads(SNAPSHOT.read_text())["rich"]["modules"]
    for part, cls in (("export", "ExportSettings"), ("build", "BuildSettings"), ("verify", "VerifySettings")):
        import trtforge.manifest as m

        fields = {f.name for f in dataclasses.fields(getattr(m, cls))}
        assert set(recorded["enc"][part]) == fields, part
    assert recorded["dec"]["as_key"]["profiles"] and recorded["enc"]["as_key"]["method"] == "encode"
    assert recorded["dec"]["as_key"]["checkpoint"] == "ckpt/dec"
