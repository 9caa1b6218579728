"""The SDXL UNet config at toy widths (issue 11): its FP16 dynamo export concatenates the FP16 text
embeds with the FP32 time-id embedding in one Concat, an ill-typed graph that onnx's full check,
ONNX Runtime and the TensorRT parser refuse. With the default passes (legalize_dtypes first) it
builds with TensorRT-RTX, verifies and publishes; every later stage's ONNX passes the full check;
without legalize_dtypes the build stops with exit 2 naming the Concat (at dc06a34, before the pass:
exit 1, `AssertionError: precision realiser produced an ill-typed graph ... node_concat`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from tests.conftest import ONNX_STAGES, run_cli
from trtforge.graphs.files import check_full

pytestmark = pytest.mark.slow  # the console script on real builds

MANIFEST = """
[modules.sdxl_unet]
factory = "models:sdxl_unet"
inputs.sample = { shape = [1, 4, 16, 16] }
inputs.timestep = { shape = [1], dtype = "int64", range = [0, 999] }
inputs.encoder_hidden_states = { shape = [1, 8, 32] }
inputs.text_embeds = { shape = [1, 32] }
inputs.time_ids = { shape = [1, 6], range = [0.0, 1024.0] }
"""
NO_LEGALIZE = 'passes = [{ name = "fold_static_shapes" }, { name = "cleanup" }, { name = "toposort" }]\n'


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory) -> tuple[Path, dict]:
    pytest.importorskip("diffusers")  # here, not at import: collecting the fast lane stays light
    root = tmp_path_factory.mktemp("sdxl")
    shutil.copy(Path(__file__).with_name("models.py"), root / "models.py")
    (root / "engines.toml").write_text(MANIFEST)
    out = run_cli("build", "--json", cwd=root, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return root, json.loads(out.stdout)["modules"][0]


def _legalize(module: dict) -> dict:
    return next(p for p in module["stages"]["graph_passes"]["meta"]["passes"] if p["name"] == "legalize_dtypes")


def test_builds_with_tensorrt_rtx_verifies_and_publishes(sdxl):
    root, m = sdxl
    assert m["ok"], m["error"]
    assert m["stages"]["build"]["meta"]["backend"] == "tensorrt-rtx"
    assert list(root.glob("engines/*/sdxl_unet.engine"))
    # 8 attention blocks (self + cross in the down block, the mid block and twice in the up block),
    # each with its score MatMul and Softmax kept FP32, in the plan and in the parsed network
    ops = [v["op"] for v in m["stages"]["precision_rules"]["meta"]["fp32"].values()]
    assert ops.count("MatMul") == 8 and ops.count("Softmax") == 8
    assert len(m["stages"]["build"]["meta"]["fp32_layers"]) == 16
    checks = m["stages"]["verify"]["meta"]["checks"]
    # the mixed export too: its check runs the graph widened to FP32, node by node
    assert {s: checks[s]["status"] for s in ONNX_STAGES} == {s: "ok" for s in ONNX_STAGES}


def test_legalize_widens_the_text_embeds_and_says_so(sdxl):
    root, m = sdxl
    legal = _legalize(m)
    assert legal["modified"]
    # the FP32 side is computed (sinusoidal time ids): the FP16 side is widened, nothing rounds
    assert legal["check"] == "identical"
    assert [c for c in legal["changes"] if c.startswith("Concat 'node_concat': input 'text_embeds' float16 -> float32")]
    report = (root / "engines" / "REPORT.md").read_text()
    assert "- legalize_dtypes: Concat 'node_concat': input 'text_embeds' float16 -> float32" in report


def test_every_stage_onnx_after_export_passes_the_full_check(sdxl):
    root, m = sdxl
    views = root / ".trtforge-cache" / "views"
    export = onnx.load(str(views / m["stages"]["export"]["key"] / "model.onnx"), load_external_data=False)
    with pytest.raises(onnx.shape_inference.InferenceError, match="node_concat"):
        check_full(export)  # the toy reproduces the mixed Concat
    for stage in ONNX_STAGES[1:]:
        check_full(onnx.load(str(views / m["stages"][stage]["key"] / "model.onnx"), load_external_data=False))


def test_without_legalize_the_build_stops_with_exit_2_naming_the_concat(sdxl):
    root, _ = sdxl
    (root / "engines.toml").write_text(MANIFEST + NO_LEGALIZE)
    try:
        out = run_cli("build", cwd=root, timeout=900)
    finally:
        (root / "engines.toml").write_text(MANIFEST)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("trtforge: error:")]
    assert len(errors) == 1
    assert "Concat 'node_concat' mixes input dtypes 'text_embeds' float16" in errors[0]
    assert 'add { name = "legalize_dtypes" }' in errors[0]
