"""The crossover runs swap in the form that failed: the FP16 graph, or, when the graphs pass and
only the engines fail, the engine (issue 23: "that module as published"). Engines run only on a
GPU their backend supports, so the engine here is a stand-in (a named test double): the toy
logistic map computed in FP16 with numpy, as an FP16 engine computes it; the FP32 modules are
the same maps in FP32. Run, the handles, the runner and the verdicts are the real ones."""

from __future__ import annotations

import numpy as np

from tests.pipelines.toy_runners import iterate
from trtforge.manifest.pipelines import PipelineSpec
from trtforge.pipelines import verdict
from trtforge.pipelines.check import Run, crossovers
from trtforge.pipelines.harness import Recorder, Signature

SHAPE = (1, 3, 8, 8)
SPEC = PipelineSpec(
    "chaos",
    ("unet", "decode"),
    "runners.chaos:iterate",
    {"steps": 24},
    (),
    {"image": {"metric": "psnr", "min_psnr": 30.0, "peak": 0.0}},
)
SIGS = {n: Signature(n, (("x", SHAPE, "float32"),)) for n in SPEC.modules}


def fp32_unet(feeds):
    x = feeds["x"].astype(np.float32)
    return {"y": np.float32(3.9) * x * (np.float32(1) - x)}


def fp16_engine_unet_standin(feeds):
    """TEST DOUBLE for an FP16 UNet engine (no GPU here): the map with every tensor in FP16."""
    x = feeds["x"].astype(np.float16)
    return {"y": np.float16(3.9) * x * (np.float16(1) - x)}


def decode(feeds):
    return {"image": 2 * feeds["x"] - 1}


def test_the_crossover_swaps_in_the_failing_engine_and_blames_its_module():
    x0 = np.random.default_rng(0).uniform(0.1, 0.9, SHAPE).astype(np.float32)
    run = Run(SPEC, SIGS, iterate, {"x0": x0})
    fp32 = {"unet": fp32_unet, "decode": decode}
    engines = {"unet": fp16_engine_unet_standin, "decode": decode}
    reference = run(fp32, Recorder())
    # the published FP16 graphs would be the FP32 maps here (they pass); the engines drift
    assert not verdict.failures(verdict.judge("chaos", run(fp32, Recorder()), reference, SPEC.outputs, run.inputs))
    assert verdict.failures(verdict.judge("chaos", run(engines, Recorder()), reference, SPEC.outputs, run.inputs))
    cross = crossovers(run, fp32, engines, reference)
    assert not cross["unet"]["passed"] and cross["decode"]["passed"]
    assert verdict.blame(cross) == "unet"
    # swapping in the graphs instead (what the check did before) blames on nothing real
    assert all(c["passed"] for c in crossovers(run, fp32, fp32, reference).values())
