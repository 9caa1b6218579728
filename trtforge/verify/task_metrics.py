"""Task metrics declared per output in the manifest (verify.outputs.<name>.metric): a tensor can be
within tolerance and still wrong for its task, or off by a lot and still right (a field report:
an FP16 ViT gave mIoU 0.119 instead of 0.988). Each returns (value, passed)."""

from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, r: np.ndarray, tol: dict) -> tuple[float, bool]:
    """Peak signal-to-noise ratio in dB; the peak is the reference's range unless `peak` is set."""
    peak = tol.get("peak") or float(np.ptp(r)) or 1.0
    mse = float(np.mean((a - r) ** 2))
    value = float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)
    return value, value >= tol["min_psnr"]


def _masks(x: np.ndarray, tol: dict) -> list[np.ndarray]:
    if tol["mask"] == "argmax":
        labels = np.argmax(x, axis=tol["axis"])
        return [labels == c for c in range(x.shape[tol["axis"]])]
    return [x > tol["threshold"]]


def iou(a: np.ndarray, r: np.ndarray, tol: dict) -> tuple[float, bool]:
    """IoU of the thresholded masks, or mean IoU over the classes present (argmax over `axis`)."""
    scores = []
    for ma, mr in zip(_masks(a, tol), _masks(r, tol)):
        union = np.logical_or(ma, mr).sum()
        if union:
            scores.append(np.logical_and(ma, mr).sum() / union)
    value = float(np.mean(scores)) if scores else 1.0  # both empty: they agree
    return value, value >= tol["min_iou"]


def topk(a: np.ndarray, r: np.ndarray, tol: dict) -> tuple[float, bool]:
    """Mean overlap of the top-k classes along `axis`, |topk(actual) ∩ topk(ref)| / k per row."""
    k = min(tol["k"], a.shape[tol["axis"]])
    ta = np.argsort(-np.moveaxis(a, tol["axis"], -1), axis=-1, kind="stable")[..., :k].reshape(-1, k)
    tr = np.argsort(-np.moveaxis(r, tol["axis"], -1), axis=-1, kind="stable")[..., :k].reshape(-1, k)
    value = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta.tolist(), tr.tolist())]))
    return value, value >= tol["min_topk"]


METRICS = {"psnr": (psnr, "min_psnr"), "iou": (iou, "min_iou"), "topk": (topk, "min_topk")}


def task_metric(a: np.ndarray, r: np.ndarray, tol: dict) -> dict | None:
    name = tol.get("metric")
    if not name:
        return None
    fn, bound = METRICS[name]
    value, ok = fn(a, r, tol)
    return {"metric": name, "value": value, "min": tol[bound], "ok": bool(ok)}
