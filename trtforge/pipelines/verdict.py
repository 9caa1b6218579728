"""A pipeline's outputs judged: is the reference itself sound, does the published run match it,
and, when it does not, which module drifts (the crossover runs).

A broken reference is the truth itself broken (an FP16 PyTorch reference that overflowed to black
images was once cached as the truth by a diffusion release tool): not finite, constant, an image
that is one colour, rows that are all the same (the rule modules' references are held to,
verify/valid.py, for what a user receives). It is refused (exit 2), never compared against.
"""

from __future__ import annotations

import numpy as np

from trtforge.errors import PipelineError
from trtforge.verify.metrics import compare
from trtforge.verify.task_metrics import METRICS
from trtforge.verify.valid import reference_problem


def check_reference(pipeline: str, reference: dict, inputs: dict) -> None:
    """Refuse a reference run whose outputs cannot be the truth (verify/valid.py's rule, as for a
    module's FP32 reference, for what a user receives): a PipelineError naming the pipeline."""
    for name, value in reference.items():
        why = reference_problem(value, None, inputs, False, product=True)
        if why:
            raise PipelineError(
                f"the reference run (every module FP32 PyTorch) is broken: output '{name}': {why}",
                where=f"pipelines.{pipeline}",
                hint="the truth itself is wrong: fix the runner, its inputs or the modules' weights; nothing published",
            )


def sequence(actual: np.ndarray, ref: np.ndarray, checks: dict) -> dict:
    """The share of generated tokens equal to the reference's, position by position."""
    a, r = np.asarray(actual), np.asarray(ref)
    if a.shape != r.shape:
        return {"ok": False, "reason": f"shape {list(a.shape)} != reference {list(r.shape)}", "value": 0.0}
    value = float((a == r).mean()) if a.size else 1.0
    first = np.argwhere(a != r)
    m = {"metric": "sequence", "value": value, "min": checks["min_match"], "ok": value >= checks["min_match"]}
    if len(first):
        m["first_difference"] = [int(i) for i in first[0]]
    if not m["ok"]:
        m["reason"] = f"sequence match {value:.2%} < {checks['min_match']:.2%}"
    return m


def judge_output(actual: np.ndarray, ref: np.ndarray, checks: dict) -> dict:
    """One output against the reference: the metric alone when one is named (an image's pixels
    drift after N steps and still look the same), else the module tolerances."""
    metric = checks.get("metric")
    if metric == "sequence":
        return sequence(actual, ref, checks)
    a, r = np.asarray(actual, np.float64), np.asarray(ref, np.float64)
    if metric is None:
        m = compare(a, r, checks)
        m.pop("hist", None)
        return m
    if a.shape != r.shape:
        return {"ok": False, "reason": f"shape {list(a.shape)} != reference {list(r.shape)}", "value": 0.0}
    if not np.isfinite(a).all():
        return {"ok": False, "reason": f"{int((~np.isfinite(a)).sum())} values are NaN/Inf", "value": 0.0}
    fn, bound = METRICS[metric]
    value, ok = fn(a, r, checks)
    m = {"metric": metric, "value": float(value), "min": checks[bound], "ok": bool(ok)}
    if not ok:
        m["reason"] = f"{metric} {value:.4g} < {checks[bound]:g}"
    return m


def judge(outputs: dict, reference: dict, checks: dict) -> dict:
    return {n: judge_output(outputs[n], reference[n], c) for n, c in checks.items()}


def failures(judged: dict) -> list[str]:
    return [f"{n}: {m['reason']}" for n, m in judged.items() if not m["ok"]]


def badness(judged: dict) -> float:
    """How far a run is from passing (to rank crossover runs): the worst output's shortfall."""
    worst = 0.0
    for m in judged.values():
        if "value" in m and "min" in m:
            short = (m["min"] - m["value"]) / max(abs(m["min"]), 1e-9)
        elif "outside" in m:
            short = m["outside"] + (1.0 - m.get("cosine", 1.0))
        else:
            short = 0.0 if m["ok"] else float("inf")
        worst = max(worst, short if np.isfinite(short) else 1e30)
    return worst


def blame(crossover: dict) -> str | None:
    """The module whose published form alone fails the pipeline; if none fails alone (errors that
    only add up together), the one whose crossover is furthest from passing."""
    if not crossover:
        return None
    alone = [m for m, c in crossover.items() if not c["passed"]]
    pool = alone or list(crossover)
    return max(pool, key=lambda m: crossover[m]["badness"])
