"""Verify stage: compare every stage's artifact with the FP32 PyTorch reference on the same inputs
and attribute the first failure to a stage (export, passes, precision, or the engine's kernels)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtforge import backends as be
from trtforge.manifest import ModuleSpec, settings_dict
from trtforge.stage import Ahead, Stage, StageContext, tool_versions

# |error| histogram bins, fixed decades so reports compare across modules and runs:
# [0, 1e-7), [1e-7, 1e-6), ..., [1, 10), [10, inf). Here, not in metrics.py: reports read it
# without importing numpy.


def ordered_checks(verify: dict) -> list[tuple[str, dict]]:
    """(stage, check) of a verify stage's metadata in the order verification attributes a failure
    (its `chain`: the driver's stage order, then the engine; stored metadata has sorted keys)."""
    checks, chain = verify.get("checks", {}), verify.get("chain", [])
    return [(s, checks[s]) for s in chain if s in checks] + [(s, c) for s, c in checks.items() if s not in chain]


# the per-output metric columns of both reports, in table order: (metric key, format)
# rel err = max |error| / max |reference| (relative to the output's scale; metrics.compare)
METRIC_FORMATS = (("max_abs", ".3g"), ("rel_err", ".3g"), ("cosine", ".6f"), ("outside", ".3%"))


def metric_texts(metrics: dict, none: str = "-") -> list[str]:
    """The metric columns for one output; `none` where the check produced no metrics (not run, or
    failed before comparing)."""
    return [format(metrics[k], spec) if k in metrics else none for k, spec in METRIC_FORMATS]


def task_text(metrics: dict, none: str = "-") -> str:
    task = metrics.get("task")
    return f"{task['metric']} {task['value']:.4g} (min {task['min']:g})" if task else none


def left_out_lines(verify: dict) -> list[str]:
    """Per output with `verify.outputs.NAME.valid`: how many elements the comparisons left out
    (positions where that input is 0), over every input set, as the engine's last check counted."""
    counted: dict[str, dict] = {}
    for _, check in ordered_checks(verify):
        for name, m in (check.get("outputs") or {}).items():
            if "left_out" in m:
                counted[name] = m
    return [
        f"{name}: {m['left_out']} of {m['elements']} elements left out "
        f"(verify.outputs.{name}.valid: positions where that input is 0), over {m.get('sets', 1)} input set(s)"
        for name, m in counted.items()
    ]


@dataclass(frozen=True)
class VerifyStage(Stage):
    name: str = "verify"
    # 7: the chain order recorded in the metadata; 8: polygraphy JSON bundle; 9: rel_err;
    # 10: valid positions, broken-reference check, a bundle per profile; 11: the export and pass
    # graphs' checks evaluate only when a final check fails ("not evaluated: the final check passed")
    version: str = "verify-11"

    def key_material(self, module: ModuleSpec, root: Path) -> dict:
        # the GPUs present decide whether the engine can run here, so they are part of the key
        return {
            "verify": settings_dict(module.verify),
            "verify_outputs": module.verify_outputs,
            "gpus": [vars(g) for g in be.gpus()],
            "tools": tool_versions("onnxruntime", "onnxruntime-gpu", "numpy", "polygraphy"),
        }

    def run(self, ctx: StageContext, workdir: Path) -> dict:
        from trtforge.verify.run import verify_module

        return verify_module(ctx, workdir)

    def ahead(self) -> Ahead:
        # the FP16-faithful check of the precision graph needs no engine: it runs while it builds
        return Ahead(("export", "precision_rules"), _final_onnx_check)


def _final_onnx_check(ctx: StageContext) -> dict:
    from trtforge.verify.run import final_onnx_check

    return final_onnx_check(ctx)
