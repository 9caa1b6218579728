"""[modules.NAME] and [defaults] tables -> `ModuleSpec`s, every default resolved once, here.

Every user mistake is a `ManifestError` naming the dotted field; the checks run in a fixed order,
so a table with several mistakes always names the same one first.
"""

from __future__ import annotations

import difflib
from typing import Any

from trtforge.data import sources as input_sources
from trtforge.data.dims import check_static_preprocess, max_values, parse_profiles
from trtforge.data.transforms import parse as parse_transform
from trtforge.errors import ManifestError
from trtforge.manifest import checks as c
from trtforge.manifest import limits
from trtforge.manifest.settings import (
    BUILD,
    DEFAULT_PASSES,
    DEFAULT_RULES,
    EXPORT,
    OUTPUT_USE,
    PASS_CHECKS,
    PRECISION,
    TASK,
    TOLERANCE,
    TOP,
    VERIFY,
    BuildSettings,
    ExportSettings,
    PrecisionSettings,
    VerifySettings,
)
from trtforge.manifest.spec import INPUT, InputSpec, ModuleSpec

MODULE_KEYS = (
    "checkpoint",
    "method",
    "factory",
    "factory_args",
    "factory_paths",
    "inputs",
    "outputs",
    "depends",
    "export",
    "passes",
    "precision",
    "build",
    "verify",
    "pass_check",
    "dims",
    "profiles",
)
DEFAULT_KEYS = ("export", "passes", "precision", "build", "verify", "pass_check")


def parse_module(name: str, raw: Any, defaults: dict, where: str) -> ModuleSpec:
    """One [modules.NAME] table over the resolved [defaults] (`parse_defaults`)."""
    _check_name(name, raw, where)
    factory = c.factory(raw["factory"], f"{where}.factory")
    fargs = raw.get("factory_args", {})
    if not isinstance(fargs, dict):
        raise ManifestError("expected a table of keyword arguments", where=f"{where}.factory_args")
    fpaths = _factory_paths(raw.get("factory_paths", []), fargs, f"{where}.factory_paths")
    raw_inputs = raw.get("inputs")
    if not isinstance(raw_inputs, dict) or not raw_inputs:
        raise ManifestError("expected a table name -> {shape, dtype, range}", where=f"{where}.inputs")
    inputs = tuple(parse_input(k, v, f"{where}.inputs.{k}") for k, v in raw_inputs.items())
    profiles = parse_profiles(raw, inputs, where)
    outputs, renames = c.outputs(raw.get("outputs", []), f"{where}.outputs")
    checkpoint = c.checkpoint(raw["checkpoint"], f"{where}.checkpoint") if "checkpoint" in raw else ""
    method = c.method(raw.get("method", "forward"), f"{where}.method")
    depends = c.str_list(raw.get("depends", []), f"{where}.depends")
    for i, pattern in enumerate(depends):
        limits.check_pattern(pattern, f"{where}.depends[{i}]")
    precision_raw, rules = _precision_table(raw, defaults, where)
    verify_raw, per_output = _verify_table(raw, outputs, inputs, where)
    export = _export(raw, defaults, profiles, where)
    verify = c.section(verify_raw, VERIFY, f"{where}.verify", base=defaults["verify"])
    # the largest shapes bound the memory: sets at every profile point, each at most the max shape
    sets = 1 + verify["random_inputs"] + (3 + verify["shapes"]) * len(profiles)
    limits.check_input_sizes(inputs, sets, where, max_values(profiles))
    passes = _passes(raw, defaults, inputs, where)
    precision = c.section(precision_raw, PRECISION, f"{where}.precision", base=defaults["precision"])
    build = c.section(raw.get("build", {}), BUILD, f"{where}.build", base=defaults["build"])
    return ModuleSpec(
        name=name,
        factory=factory,
        factory_args=dict(sorted(fargs.items())),
        inputs=inputs,
        outputs=outputs,
        depends=depends,
        export=ExportSettings(**export),
        passes=passes,
        precision_rules=rules,
        precision=PrecisionSettings(**precision),
        build=BuildSettings(**build),
        verify=VerifySettings(**verify),
        verify_outputs=per_output,
        pass_check=_pass_check(raw, where, defaults["pass_check"]),
        factory_paths=fpaths,
        profiles=profiles,
        checkpoint=checkpoint,
        method=method,
        output_renames=renames,
    )


def _check_name(name: str, raw: Any, where: str) -> None:
    """The module's name (a folder name), its table's keys and its one required key."""
    if not c.NAME_RE.match(name) or ".." in name:
        raise ManifestError(
            f"module name '{name}' must be letters, digits, '_', '-', '.' (no path separators or '..')", where=where
        )
    limits.check_name(name, "module", where)
    if not isinstance(raw, dict):
        raise ManifestError(f"expected a table, got {type(raw).__name__}", where=where)
    c.known_keys(raw, MODULE_KEYS, where)
    if "factory" not in raw:
        raise ManifestError(
            "missing required key 'factory'", where=f"{where}.factory", hint="write factory = 'package.module:callable'"
        )


def _pass_check(raw: dict, where: str, default: str) -> str:
    return c.one_of(PASS_CHECKS)(raw["pass_check"], f"{where}.pass_check") if "pass_check" in raw else default


def _precision_table(raw: dict, defaults: dict, where: str) -> tuple[dict, tuple[dict, ...]]:
    """[precision] split into its settings (still raw) and its rules (resolved)."""
    precision_raw = dict(raw.get("precision", {})) if isinstance(raw.get("precision", {}), dict) else None
    if precision_raw is None:
        raise ManifestError("expected a table", where=f"{where}.precision")
    rules_raw = precision_raw.pop("rules", None)
    rules = (
        c.steps(rules_raw, f"{where}.precision.rules", "rule") if rules_raw is not None else defaults["precision_rules"]
    )
    return precision_raw, rules


def _verify_table(raw: dict, outputs: tuple, inputs: tuple[InputSpec, ...], where: str) -> tuple[dict, dict]:
    """[verify] split into its settings (still raw) and its per-output checks (resolved)."""
    verify_raw = dict(raw.get("verify", {})) if isinstance(raw.get("verify", {}), dict) else None
    if verify_raw is None:
        raise ManifestError("expected a table", where=f"{where}.verify")
    per_output_raw = verify_raw.pop("outputs", {})
    if not isinstance(per_output_raw, dict):
        raise ManifestError("expected a table output -> tolerances", where=f"{where}.verify.outputs")
    per_output = {}
    for out_name, tol in sorted(per_output_raw.items()):
        w = f"{where}.verify.outputs.{out_name}"
        if not isinstance(tol, dict):
            raise ManifestError("expected a table of tolerances", where=w)
        per_output[out_name] = _output_checks(tol, w)
    if outputs and set(per_output) - set(outputs):
        bad = sorted(set(per_output) - set(outputs))[0]
        raise ManifestError(
            f"output '{bad}' is not among outputs {list(outputs)}", where=f"{where}.verify.outputs.{bad}"
        )
    check_valid_inputs(per_output, inputs, f"{where}.verify.outputs")
    return verify_raw, per_output


def _export(raw: dict, defaults: dict, profiles: tuple, where: str) -> dict:
    export = c.section(raw.get("export", {}), EXPORT, f"{where}.export", base=defaults["export"])
    limits.check_opset(export, f"{where}.export")
    if profiles and export["exporter"] != "dynamo":
        raise ManifestError(
            "dynamic dimensions need the dynamo exporter (torch.export Dims)",
            where=f"{where}.export.exporter",
            hint='set export.exporter = "dynamo"',
        )
    return export


def _passes(raw: dict, defaults: dict, inputs: tuple[InputSpec, ...], where: str) -> tuple[dict, ...]:
    passes = c.steps(raw["passes"], f"{where}.passes", "name") if "passes" in raw else defaults["passes"]
    for i, step in enumerate(passes):
        parse_transform(step, f"{where}.passes[{i}]")  # bake-pass parameters, checked now
    check_static_preprocess(passes, inputs, f"{where}.passes")
    return passes


def _factory_paths(value: Any, fargs: dict, where: str) -> tuple[str, ...]:
    """Names of factory_args that hold paths: each a key of factory_args whose value is a string."""
    names = c.str_list(value, where)
    for i, name in enumerate(names):
        if name not in fargs:
            near = difflib.get_close_matches(name, list(fargs), n=1)
            raise ManifestError(
                f"'{name}' is not a key of factory_args",
                where=f"{where}[{i}]",
                hint=f"did you mean '{near[0]}'?" if near else "name a factory_args key that holds a path",
            )
        if not isinstance(fargs[name], str) or not fargs[name]:
            raise ManifestError(
                f"factory_args.{name} is {fargs[name]!r}, not a path",
                where=f"{where}[{i}]",
                hint="write the path as a string, relative to the manifest's folder",
            )
    return tuple(sorted(set(names)))


def parse_input(name: str, raw: Any, where: str) -> InputSpec:
    """One inputs.NAME table (a module's or a pipeline's): shape, dtype, range, arg and a source."""
    limits.check_tensor_name(name, "input", where)
    if not isinstance(raw, dict):
        raise ManifestError(f"expected a table, got {type(raw).__name__}", where=where)
    for key in raw:
        if key not in INPUT and key not in input_sources.SOURCE_KEYS:
            near = difflib.get_close_matches(key, [*INPUT, *input_sources.SOURCE_KEYS], n=1)
            raise ManifestError(
                f"unknown key '{key}'",
                where=f"{where}.{key}",
                hint=f"did you mean '{near[0]}'?"
                if near
                else f"known keys: {', '.join([*INPUT, *input_sources.SOURCE_KEYS])}",
            )
    fields = c.section({k: v for k, v in raw.items() if k in INPUT}, INPUT, where)
    if fields["arg"] and not fields["arg"].isidentifier():
        raise ManifestError(
            f"'{fields['arg']}' is not a parameter name",
            where=f"{where}.arg",
            hint="name one of forward()'s parameters, e.g. arg = 'input_ids'",
        )
    source = input_sources.parse(
        {k: v for k, v in raw.items() if k in input_sources.SOURCE_KEYS},
        fields["dtype"],
        fields["shape"],
        "range" in raw,
        where,
    )
    spec = InputSpec(name=name, **{**fields, "arg": fields["arg"] or name}, source=source)
    limits.check_range(*spec.range, spec.dtype, f"{where}.range")
    return spec


def check_valid_inputs(per_output: dict, inputs: tuple[InputSpec, ...], where: str, owner: str = "module") -> None:
    """verify.outputs.X.valid names an integer or bool input of the module (or of the pipeline,
    `owner`, for its outputs.X.valid) (1 = a real position)."""
    specs = {s.name: s for s in inputs}
    for out_name, checks in per_output.items():
        name = checks.get("valid")
        if name is None:
            continue
        spec = specs.get(name)
        if spec is None:
            near = difflib.get_close_matches(name, list(specs), n=1)
            raise ManifestError(
                f"'{name}' is not an input of the {owner}",
                where=f"{where}.{out_name}.valid",
                hint=f"did you mean '{near[0]}'?" if near else f"name one of the inputs {list(specs)}",
            )
        if spec.dtype.startswith("float"):
            raise ManifestError(
                f"input '{name}' is {spec.dtype}; valid needs an integer or bool input (1 = a real position)",
                where=f"{where}.{out_name}.valid",
                hint="name the attention or padding mask input",
            )


def _output_checks(raw: dict, where: str) -> dict:
    """Per-output tolerance overrides plus an optional task metric with its keys resolved."""
    raw = dict(raw)
    metric = raw.pop("metric", None)
    spec: dict[str, Any] = {**TOLERANCE, **OUTPUT_USE}
    if metric is not None:
        spec.update(TASK[c.one_of(tuple(TASK))(metric, f"{where}.metric")])
    for key in raw:
        if key not in spec:
            owner = next((m for m, keys in TASK.items() if key in keys), None)
            near = difflib.get_close_matches(key, [*spec, "metric"], n=1)
            hint = f"'{key}' belongs to metric = '{owner}'" if owner else f"did you mean '{near[0]}'?" if near else None
            raise ManifestError(f"unknown key '{key}'", where=f"{where}.{key}", hint=hint)
    out = {k: spec[k][0](v, f"{where}.{k}") for k, v in sorted(raw.items()) if k in TOLERANCE or k in OUTPUT_USE}
    if metric is not None:
        out["metric"] = metric
        out.update(c.section({k: v for k, v in raw.items() if k in TASK[metric]}, TASK[metric], where))
    return dict(sorted(out.items()))


def parse_defaults(raw: Any, where: str) -> dict:
    """[defaults]: each stage section resolved (the modules' base) and the top-level keys."""
    if not isinstance(raw, dict):
        raise ManifestError("expected a table", where=where)
    c.known_keys(raw, (*DEFAULT_KEYS, *TOP), where)
    if not isinstance(raw.get("precision", {}), dict):
        raise ManifestError("expected a table", where=f"{where}.precision")
    precision = dict(raw.get("precision", {}))
    rules = precision.pop("rules", None)
    return {
        "export": c.section(raw.get("export", {}), EXPORT, f"{where}.export"),
        "passes": c.steps(raw["passes"], f"{where}.passes", "name") if "passes" in raw else DEFAULT_PASSES,
        "precision_rules": (c.steps(rules, f"{where}.precision.rules", "rule") if rules is not None else DEFAULT_RULES),
        "precision": c.section(precision, PRECISION, f"{where}.precision"),
        "build": c.section(raw.get("build", {}), BUILD, f"{where}.build"),
        "verify": c.section(raw.get("verify", {}), VERIFY, f"{where}.verify"),
        "pass_check": _pass_check(raw, where, "each"),
        **c.section({k: raw[k] for k in TOP if k in raw}, TOP, where),
    }
