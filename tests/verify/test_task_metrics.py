"""Task metrics per output: the manifest resolves them with their defaults and rejects misplaced
keys; PSNR, IoU and top-k agreement judge outputs that tensor tolerances alone misjudge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trtforge.errors import ManifestError
from trtforge.manifest import parse_manifest
from trtforge.verify.metrics import HIST_EDGES, compare, merge_sets

LOOSE = {"atol": 1e9, "rtol": 0.0, "max_outside": 1.0, "min_cosine": 0.0}


def _manifest(outputs_toml: str):
    text = f"""
[modules.m]
factory = "pkg.mod:make"
inputs.x = {{ shape = [1, 3, 8, 8] }}
outputs = ["image", "mask", "logits"]
{outputs_toml}
"""
    return parse_manifest(text, Path("engines.toml")).modules[0]


def test_manifest_fills_task_metric_defaults_once():
    m = _manifest(
        'verify.outputs.mask = { metric = "iou", mask = "argmax", atol = 0.5 }\n'
        'verify.outputs.logits = { metric = "topk" }'
    )
    assert m.tolerance("mask") == {
        "atol": 0.5,
        "rtol": 0.01,
        "max_outside": 1e-3,
        "min_cosine": 0.999,
        "metric": "iou",
        "mask": "argmax",
        "threshold": 0.5,
        "axis": 1,
        "min_iou": 0.9,
    }
    assert m.tolerance("logits")["k"] == 5 and m.tolerance("logits")["min_topk"] == 0.8
    assert "metric" not in m.tolerance("image")


@pytest.mark.parametrize(
    "toml,message",
    [
        ('verify.outputs.image = { metric = "ssim" }', "'ssim' is not one of psnr, iou, topk"),
        ('verify.outputs.image = { metric = "psnr", k = 3 }', "'k' belongs to metric = 'topk'"),
        ("verify.outputs.image = { min_psnr = 30 }", "'min_psnr' belongs to metric = 'psnr'"),
        ('verify.outputs.mask = { metric = "iou", min_iou = 1.5 }', "must be a fraction"),
    ],
)
def test_manifest_rejects_bad_task_metric(toml, message):
    with pytest.raises(ManifestError) as e:
        _manifest(toml)
    assert message in e.value.one_line()
    assert "modules.m.verify.outputs." in e.value.one_line()


def test_psnr_fails_a_noisy_image_that_tolerances_let_through():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, (1, 3, 32, 32))
    noisy = ref + rng.normal(0, 0.05, ref.shape)  # ~26 dB
    m = compare(noisy, ref, {**LOOSE, "metric": "psnr", "min_psnr": 40.0, "peak": 0.0})
    assert not m["ok"] and m["task"]["metric"] == "psnr"
    assert 24 < m["task"]["value"] < 28
    assert "psnr" in m["reason"]
    assert compare(ref + 1e-4, ref, {**LOOSE, "metric": "psnr", "min_psnr": 40.0, "peak": 1.0})["ok"]


def test_iou_threshold_and_argmax():
    ref = np.zeros((1, 1, 4, 4))
    ref[..., :2, :] = 1.0  # top half on
    half_wrong = ref.copy()
    half_wrong[..., 0, :] = 0.0  # lose one of two rows: IoU 0.5
    m = compare(
        half_wrong, ref, {**LOOSE, "metric": "iou", "mask": "threshold", "threshold": 0.5, "axis": 1, "min_iou": 0.9}
    )
    assert m["task"]["value"] == pytest.approx(0.5) and not m["ok"]
    logits = np.stack([ref[0, 0], 1 - ref[0, 0]])[None]  # 2 classes, argmax over axis 1
    m = compare(
        logits * 3.0, logits, {**LOOSE, "metric": "iou", "mask": "argmax", "threshold": 0.5, "axis": 1, "min_iou": 0.9}
    )
    assert m["task"]["value"] == 1.0 and m["ok"]  # scaled logits: same masks


def test_topk_agreement():
    ref = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    swapped = ref.copy()
    swapped[0, [1, 4]] = swapped[0, [4, 1]]  # row 0 loses class 1 from its top 2
    m = compare(swapped, ref, {**LOOSE, "metric": "topk", "k": 2, "axis": -1, "min_topk": 0.8})
    assert m["task"]["value"] == pytest.approx(0.75) and not m["ok"]


def test_histogram_counts_every_element_in_fixed_decades():
    ref = np.zeros(6)
    act = np.array([0.0, 5e-8, 5e-4, 0.5, 5.0, 50.0])
    hist = compare(act, ref, LOOSE)["hist"]
    assert len(hist) == len(HIST_EDGES) - 1 and sum(hist) == 6
    assert hist[0] == 2 and hist[-1] == 1 and hist[-2] == 1  # [0,1e-7) twice, [1,10), [10,inf)


def test_merge_sets_keeps_the_worst_set_and_sums_histograms():
    ref = np.linspace(-1, 1, 100)
    tol = {"atol": 1e-2, "rtol": 0.0, "max_outside": 0.0, "min_cosine": 0.0}
    good = compare(ref, ref, tol)
    bad = compare(ref + np.where(np.arange(100) < 10, 1.0, 0.0), ref, tol)
    merged = merge_sets([("example", {"y": good}), ("random 1", {"y": bad})])["y"]
    assert not merged["ok"] and merged["set"] == "random 1"
    assert merged["sets"] == 2 and merged["sets_failed"] == 1
    assert "input set 'random 1', 1 of 2 sets failed" in merged["reason"]
    assert sum(merged["hist"]) == 200
