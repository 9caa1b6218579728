"""Per-output comparison against the FP32 reference, and the guards that catch broken outputs
that small error figures would hide (NaN/Inf, constant outputs, identical rows)."""

from __future__ import annotations

import numpy as np

from trtforge.artifacts import HIST_EDGES
from trtforge.verify.task_metrics import task_metric
from trtforge.verify.valid import keep_for, outside, rows_identical, zero_input_hint


def histogram(diff: np.ndarray) -> list[int]:
    return [int(c) for c in np.histogram(diff.ravel(), bins=np.array(HIST_EDGES))[0]]


def compare(actual: np.ndarray, ref: np.ndarray, tol: dict, keep: np.ndarray | None = None) -> dict:
    """keep: True where an element counts (verify.outputs.NAME.valid; verify/valid.py); the
    others are left out of every figure and guard, and counted in `left_out`."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if a.shape != r.shape:
        return {"ok": False, "reason": f"shape {list(a.shape)} != reference {list(r.shape)}"}
    full_a, full_r = a, r
    left: dict = {}
    if keep is not None:
        left = {"left_out": int(a.size - np.count_nonzero(keep)), "elements": int(a.size)}
        a, r = a[keep], r[keep]
    finite = np.isfinite(a)
    if not finite.all():
        bad = int((~finite).sum())
        return {
            "ok": False,
            "reason": f"{bad} of {a.size} values are NaN/Inf",
            "nonfinite": bad,
            "hist": histogram(np.abs(a[finite] - r[finite])),
            **left,
        }
    diff = np.abs(a - r)
    scale = np.abs(r)
    rel = diff / np.maximum(scale, 1e-6)
    bound = tol["atol"] + tol["rtol"] * scale
    outside = float((diff > bound).mean()) if a.size else 0.0
    denom = np.linalg.norm(a.ravel()) * np.linalg.norm(r.ravel())
    cosine = float(a.ravel() @ r.ravel() / denom) if denom > 0 else (1.0 if np.allclose(a, r) else 0.0)
    max_abs = float(diff.max(initial=0.0))
    # the headline: the error relative to the output's scale, as the tolerance's atol + rtol thinks
    # of it (element-wise max_rel blows up wherever the reference crosses zero: 106 on a VAE decoder
    # that was within 0.1 % of its range); kept in the JSON, not in the report columns
    range_ = float(scale.max(initial=0.0))
    m = {
        "max_abs": max_abs,
        "rel_err": max_abs / range_ if range_ > 0 else (0.0 if max_abs == 0 else float("inf")),
        "max_rel": float(rel.max(initial=0.0)),
        "mean_rel": float(rel.mean()) if a.size else 0.0,
        "cosine": cosine,
        "outside": outside,
        "hist": histogram(diff),
        **left,
    }
    reasons = []
    if outside > tol["max_outside"]:
        reasons.append(
            f"{outside:.2%} of elements outside atol {tol['atol']:g} + rtol {tol['rtol']:g} "
            f"(allowed {tol['max_outside']:.2%})"
        )
    if cosine < tol["min_cosine"]:
        reasons.append(f"cosine {cosine:.5f} < {tol['min_cosine']}")
    if a.size > 1 and np.ptp(a) == 0 and np.ptp(r) > 0:
        reasons.append("output is constant while the reference is not")
    if rows_identical(full_a, keep) and not rows_identical(full_r, keep):
        reasons.append("every row is identical while the reference's are not")
    # a task metric reads the output's layout: left-out elements take the reference's values
    task = task_metric(full_a if keep is None else np.where(keep, full_a, full_r), full_r, tol)
    if task:
        m["task"] = task
        if not task["ok"]:
            reasons.append(f"{task['metric']} {task['value']:.4g} < {task['min']:g}")
    m["ok"] = not reasons
    if reasons:
        m["reason"] = "; ".join(reasons)
    return m


def compare_all(actual: dict, ref: dict, tolerance, inputs: dict | None = None) -> dict:
    """tolerance: a callable output name -> tolerance dict; inputs: the set's inputs (what
    `valid` reads, and the 0/1 inputs a failure confined to padding is blamed on)."""
    out = {}
    for name, r in ref.items():
        if name not in actual:
            out[name] = {"ok": False, "reason": "output missing"}
            continue
        tol = tolerance(name)
        keep = keep_for(name, np.shape(r), tol, inputs)
        m = out[name] = compare(actual[name], r, tol, keep)
        if not m["ok"] and keep is None and inputs and np.shape(actual[name]) == np.shape(r):
            hint = zero_input_hint(name, outside(actual[name], r, tol), inputs)
            if hint:
                m["reason"] += f"; {hint}"
                m["padding_hint"] = hint
    return out


def _worse(m: dict, than: dict) -> bool:
    if m["ok"] != than["ok"]:
        return not m["ok"]
    return (m.get("outside", 1.0), -m.get("cosine", 0.0)) > (than.get("outside", 1.0), -than.get("cosine", 0.0))


def merge_sets(per_set: list[tuple[str, dict]]) -> dict:
    """One entry per output over all input sets: the worst set's metrics (named in `set`), the
    |error| histogram summed over sets, and how many sets failed."""
    out: dict[str, dict] = {}
    for label, metrics in per_set:
        for name, m in metrics.items():
            m = {**m, "set": label}
            prev = out.get(name)
            if prev is None:
                out[name] = {**m, "sets": 1, "sets_failed": int(not m["ok"])}
                continue
            hist = [x + y for x, y in zip(prev.get("hist", []), m.get("hist", []))] or prev.get("hist") or m.get("hist")
            counts = {
                "sets": prev["sets"] + 1,
                "sets_failed": prev["sets_failed"] + int(not m["ok"]),
                "nonfinite": prev.get("nonfinite", 0) + m.get("nonfinite", 0),
                # elements left out (verify.outputs.NAME.valid), over every set
                **{k: prev.get(k, 0) + m.get(k, 0) for k in ("left_out", "elements") if k in prev or k in m},
            }
            out[name] = {**(m if _worse(m, prev) else prev), **counts}
            if hist:
                out[name]["hist"] = hist
    for m in out.values():
        if m["sets_failed"] and m.get("reason"):
            m["reason"] = f"{m['reason']} (input set '{m['set']}', {m['sets_failed']} of {m['sets']} sets failed)"
    return out
