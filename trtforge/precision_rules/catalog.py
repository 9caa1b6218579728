"""Built-in precision rules by manifest name (an explicit table)."""

from __future__ import annotations

import difflib
import importlib

from trtforge.errors import PrecisionError

BUILTIN = {
    "attention_score": "trtforge.precision_rules.attention_score:AttentionScoreRule",
    "op_type": "trtforge.precision_rules.op_type:OpTypeRule",
    "name_pattern": "trtforge.precision_rules.name_pattern:NamePatternRule",
    "softmax": "trtforge.precision_rules.softmax:SoftmaxRule",
    "normalization": "trtforge.precision_rules.normalization:NormalizationRule",
    "activation_range": "trtforge.precision_rules.activation_range:ActivationRangeRule",
}


def check_known(step: dict, where: str, module: str | None = None) -> str:
    """The rule's 'package.module:Class', or a one-line error naming the unknown rule."""
    target = BUILTIN.get(step["rule"])
    if target is None:
        near = difflib.get_close_matches(step["rule"], list(BUILTIN), n=1)
        raise PrecisionError(
            f"unknown rule '{step['rule']}' (built-in: {', '.join(BUILTIN)})",
            where=where,
            module=module,
            hint=f"did you mean '{near[0]}'?" if near else None,
        )
    return target


def make_rule(step: dict, where: str):
    params = {k: v for k, v in step.items() if k != "rule"}
    target = check_known(step, where)
    modname, attr = target.split(":")
    cls = getattr(importlib.import_module(modname), attr)
    try:
        return cls(**params)
    except TypeError as e:
        raise PrecisionError(f"bad parameters for rule '{step['rule']}': {e}", where=where) from e
