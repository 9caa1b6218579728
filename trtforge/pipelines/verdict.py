"""A pipeline's outputs judged: is the reference itself sound, does the published run match it,
and, when it does not, which module drifts (the crossover runs).

A broken reference is the truth itself broken (an FP16 PyTorch reference that overflowed to black
images was once cached as the truth by a diffusion release tool): not finite, constant, an image
that is one colour, rows that are all the same (the rule modules' references are held to,
verify/valid.py, for what a user receives). It is refused (exit 2), never compared against.
"""

from __future__ import annotations

import numpy as np

from trtforge.errors import PipelineError, invariant
from trtforge.verify.metrics import compare
from trtforge.verify.task_metrics import task_metric
from trtforge.verify.valid import keep_mask, outside, reference_problem, zero_input_hint


def keep_of(pipeline: str, name: str, shape: tuple, checks: dict, inputs: dict) -> np.ndarray | None:
    """`outputs.NAME.valid = "INPUT"`: True where output NAME's element is compared (the input,
    1 at real positions, broadcast along the trailing dims), as for a module's outputs."""
    if not checks.get("valid"):
        return None
    where = f"pipelines.{pipeline}.outputs.{name}.valid"
    return keep_mask(name, shape, inputs, checks["valid"], where=where)


def check_reference(pipeline: str, reference: dict, inputs: dict, checks: dict) -> None:
    """Refuse a reference run whose outputs cannot be the truth (verify/valid.py's rule, as for a
    module's FP32 reference, for what a user receives): a PipelineError naming the pipeline."""
    for name, value in reference.items():
        c = checks.get(name, {})
        keep = keep_of(pipeline, name, np.shape(value), c, inputs)
        why = reference_problem(value, keep, inputs, bool(c.get("constant_ok")), product=True)
        if why:
            raise PipelineError(
                f"the reference run (every module FP32 PyTorch) is broken: output '{name}': {why}",
                where=f"pipelines.{pipeline}",
                hint="the truth itself is wrong: fix the runner, its inputs or the modules' weights; nothing published",
            )


def _left_out(keep: np.ndarray | None) -> dict:
    return {} if keep is None else {"left_out": int(keep.size - np.count_nonzero(keep)), "elements": int(keep.size)}


def sequence(a: np.ndarray, r: np.ndarray, checks: dict, keep: np.ndarray | None = None) -> dict:
    """The share of generated tokens equal to the reference's, position by position (at the
    positions `valid` keeps)."""
    same = a == r
    counted = same[keep] if keep is not None else same.ravel()
    value = float(counted.mean()) if counted.size else 1.0
    first = np.argwhere(~same & (keep if keep is not None else True))
    m = {"metric": "sequence", "value": value, "min": checks["min_match"], "ok": value >= checks["min_match"]}
    if len(first):
        m["first_difference"] = [int(i) for i in first[0]]
    if not m["ok"]:
        m["reason"] = f"sequence match {value:.2%} < {checks['min_match']:.2%}"
    return m


def judge_output(actual: np.ndarray, ref: np.ndarray, checks: dict, keep: np.ndarray | None = None) -> dict:
    """One output against the reference: the metric alone when one is named (an image's pixels
    drift after N steps and still look the same), else the module tolerances. keep: the elements
    compared (`valid`); a metric reads the others as the reference's, as for modules."""
    metric = checks.get("metric")
    if metric is None:
        m = compare(actual, ref, checks, keep)
        m.pop("hist", None)
        return m
    a, r = np.asarray(actual), np.asarray(ref)
    if a.shape != r.shape:
        return {"ok": False, "reason": f"shape {list(a.shape)} != reference {list(r.shape)}", "value": 0.0}
    if metric == "sequence":
        return {**sequence(a, r, checks, keep), **_left_out(keep)}
    a, r = a.astype(np.float64), r.astype(np.float64)
    shown = a[keep] if keep is not None else a
    if not np.isfinite(shown).all():
        return {"ok": False, "reason": f"{int((~np.isfinite(shown)).sum())} values are NaN/Inf", "value": 0.0}
    task = task_metric(a if keep is None else np.where(keep, a, r), r, checks) or {}
    invariant("ok" in task, f"task metric '{metric}' gave no verdict")
    if not task["ok"]:
        task["reason"] = f"{metric} {task['value']:.4g} < {task['min']:g}"
    return {**task, **_left_out(keep)}


def judge(pipeline: str, outputs: dict, reference: dict, checks: dict, inputs: dict) -> dict:
    """Every output the pipeline checks; `inputs` are the run's (what `valid` reads)."""
    out = {}
    for n, c in checks.items():
        a, r = outputs[n], reference[n]
        keep = keep_of(pipeline, n, np.shape(r), c, inputs)
        m = out[n] = judge_output(a, r, c, keep)
        if not m["ok"] and keep is None and "metric" not in c and np.shape(a) == np.shape(r):
            # a tolerance failure confined to where a 0/1 input is 0 (padding) names `valid`
            hint = zero_input_hint(n, outside(a, r, c), inputs, f"pipelines.{pipeline}.outputs.{n}.valid")
            if hint:
                m["reason"] += f"; {hint}"
    return out


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
