"""The manifest's validator DSL: checkers and the JSON Schema fragment each accepts.

A checker takes `(value, where)` and returns the value (normalised: lists become tuples, numbers
floats) or raises a `ManifestError` naming `where`, the dotted field. A `Check` carries the JSON
Schema fragment it accepts: trtforge/schema/ is generated from them, so the published schema and
the loader cannot drift apart. A table is `{key: (checker, default)}` (`section`); default None
marks a required key.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trtforge.data.dims import check_dim_name
from trtforge.errors import ManifestError
from trtforge.manifest import limits

# no bfloat16: numpy, which makes the example inputs and holds every reference, has no such dtype
DTYPES = ("float16", "float32", "int64", "int32", "int8", "uint8", "bool")
BACKENDS = ("auto", "tensorrt", "tensorrt-rtx")
EXPORTERS = ("dynamo", "torchscript")
RTX_CCS = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
# module, target and pipeline names: they become folder names
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FACTORY_RE = r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*"

CheckFn = Callable[[Any, str], Any]
Spec = dict[str, tuple[CheckFn, Any]]  # a table: {key: (checker, default)}; default None: required


class Check:
    """A checker that declares the JSON Schema fragment it accepts."""

    def __init__(self, run: CheckFn, schema: dict) -> None:
        self.run = run
        self.schema = schema
        self.__name__ = getattr(run, "__name__", "check")
        self.__doc__ = run.__doc__

    def __call__(self, value: Any, where: str) -> Any:
        return self.run(value, where)


def declare(schema: dict) -> Callable[[CheckFn], Check]:
    """Decorator: the checker below accepts what `schema` (a JSON Schema fragment) describes."""

    def wrap(run: CheckFn) -> Check:
        return Check(run, schema)

    return wrap


def fragment(check: CheckFn) -> dict:
    """The JSON Schema fragment a checker declared, a copy the caller may extend."""
    if not isinstance(check, Check):
        raise TypeError(f"{check!r} declares no JSON Schema fragment (make it a Check)")
    return dict(check.schema)


def type_check(*types: type, what: str) -> CheckFn:
    """A checker accepting instances of `types` (bool only when listed: TOML's true is no integer)."""

    def check(value, where):
        if isinstance(value, bool) and bool not in types:
            raise ManifestError(f"expected {what}, got {value!r}", where=where)
        if not isinstance(value, types):
            raise ManifestError(f"expected {what}, got {type(value).__name__} {value!r}", where=where)
        return value

    return check


string = Check(type_check(str, what="a string"), {"type": "string"})
boolean = Check(type_check(bool, what="true or false"), {"type": "boolean"})
integer = Check(type_check(int, what="an integer"), {"type": "integer"})


@declare({"type": "number"})
def number(value, where):
    type_check(int, float, what="a number")(value, where)
    return limits.finite(float(value), where)  # TOML writes nan and inf


@declare({"type": "number", "minimum": 0})
def nonneg(value, where):
    value = number(value, where)
    if value < 0:
        raise ManifestError(f"must be >= 0, got {value:g}", where=where, hint="tolerances are magnitudes")
    return value


@declare({"type": "number", "minimum": 0, "maximum": 1})
def fraction(value, where):
    value = nonneg(value, where)
    if value > 1:
        raise ManifestError(f"must be a fraction in [0, 1], got {value:g}", where=where)
    return value


@declare({"type": "integer", "minimum": 1})
def positive_int(value, where):
    integer(value, where)
    if value <= 0:
        raise ManifestError(f"must be a positive integer, got {value}", where=where)
    return value


# common spellings of a dtype that difflib cannot guess ('fp16' is far from 'float16')
ALIASES = {
    "fp16": "float16",
    "half": "float16",
    "f16": "float16",
    "fp32": "float32",
    "float": "float32",
    "f32": "float32",
    "bf16": "bfloat16",
    "long": "int64",
    "int": "int32",
    "trt": "tensorrt",
    "rtx": "tensorrt-rtx",
    "tensorrt_rtx": "tensorrt-rtx",
}


def one_of(choices: tuple[str, ...]) -> Check:
    """A string among `choices`; a miss suggests the alias or the nearest choice."""

    def check(value, where):
        string(value, where)
        if value not in choices:
            alias = ALIASES.get(value.lower())
            near = [alias] if alias in choices else difflib.get_close_matches(value, choices, n=1)
            raise ManifestError(
                f"'{value}' is not one of {', '.join(choices)}",
                where=where,
                hint=f"did you mean '{near[0]}'?" if near else None,
            )
        return value

    return Check(check, {"enum": list(choices)})


@declare({"enum": list(DTYPES)})
def dtype(value, where):
    if isinstance(value, str) and value.lower() in ("bfloat16", "bf16"):
        raise ManifestError(
            "bfloat16 is not supported: numpy, which makes the example inputs and references, has no bfloat16",
            where=where,
            hint="use float16 (the engine runs FP16 either way) or float32",
        )
    return one_of(DTYPES)(value, where)


def int_in(lo: int, hi: int, hint: str | None = None) -> Check:
    """An integer in [lo, hi]."""

    def check(value, where):
        return limits.check_int_range(integer(value, where), lo, hi, where, hint)

    return Check(check, {"type": "integer", "minimum": lo, "maximum": hi})


@declare({"type": "string", "pattern": f"^{FACTORY_RE}$"})
def factory(value, where):
    string(value, where)
    if not re.fullmatch(FACTORY_RE, value):
        raise ManifestError(
            f"'{value}' is not 'package.module:callable'", where=where, hint="write e.g. 'examples.vit:make_vit'"
        )
    return value


@declare(
    {
        "type": "array",
        "minItems": 1,
        "maxItems": limits.MAX_RANK,
        # a size, or the name of a dynamic dimension whose range is dims.<name>
        "items": {
            "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}]
        },
    }
)
def shape(value, where):
    if not isinstance(value, list) or not value:
        raise ManifestError(f"expected a non-empty list of positive integers, got {value!r}", where=where)
    for i, d in enumerate(value):
        if isinstance(d, str):  # a named dynamic dimension; its range is dims.<name> (trtforge/data/dims.py)
            check_dim_name(d, f"{where}[{i}]")
        elif isinstance(d, bool) or not isinstance(d, int) or d <= 0:
            raise ManifestError(
                f"dimension {i} is {d!r}; every dimension must be a positive integer or a dimension name",
                where=where,
                hint='write a size, or a name such as "batch" with dims.batch = { min, opt, max }',
            )
    limits.check_rank(tuple(value), where)
    return tuple(value)


@declare({"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2})
def value_range(value, where):
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ManifestError(f"expected [low, high], got {value!r}", where=where)
    for v in value:
        limits.finite(float(v), where)
    if value[0] >= value[1]:
        raise ManifestError(f"low {value[0]} must be below high {value[1]}", where=where)
    return (float(value[0]), float(value[1]))


# compute capabilities that are real GPUs but not TensorRT-RTX targets: a hint that knows the
# hardware beats "did you mean 8.0?" (difflib's nearest string to "9.0")
NOT_RTX_CCS = {"9.0": "Hopper", "7.0": "Volta"}


@declare({"type": "array", "items": {"enum": [*RTX_CCS, *(float(c) for c in RTX_CCS)]}})
def cc_list(value, where):
    if not isinstance(value, list):
        raise ManifestError(f'expected a list like ["8.6", "8.9"], got {value!r}', where=where)
    out = []
    for i, v in enumerate(value):
        v = str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        if v in NOT_RTX_CCS:
            raise ManifestError(
                f"{NOT_RTX_CCS[v]} ({v}) is not a TensorRT-RTX target",
                where=f"{where}[{i}]",
                hint="build it with backend = 'tensorrt' on that GPU; TensorRT-RTX targets: " + ", ".join(RTX_CCS),
            )
        one_of(RTX_CCS)(v, f"{where}[{i}]")
        out.append(v)
    return tuple(sorted(set(out), key=lambda s: tuple(int(p) for p in s.split("."))))


@declare({"type": "array", "items": {"type": "string"}})
def str_list(value, where):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"expected a list of strings, got {value!r}", where=where)
    return tuple(value)


@declare({"type": "array", "items": {"type": "string"}, "uniqueItems": True})
def output_names(value, where):
    names = str_list(value, where)
    for i, n in enumerate(names):
        limits.check_tensor_name(n, "output", f"{where}[{i}]")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ManifestError(f"output '{dup}' is named twice", where=where)
    return names


@declare({"type": "string", "minLength": 1})
def nonempty_str(value, where):
    if not string(value, where).strip():
        raise ManifestError("must not be empty", where=where)
    return value


@declare(
    {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
        ]
    }
)
def outputs(value: Any, where: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """`outputs`: a list of names, or a table renaming the module's outputs
    (`{ sample = "image" }`: the returned name on the left, the engine's on the right)."""
    if not isinstance(value, dict):
        return output_names(value, where), ()
    if not value:
        raise ManifestError("an empty table renames nothing", where=where, hint="drop outputs, or name each output")
    for key, new in value.items():
        if not isinstance(new, str):
            raise ManifestError(
                f"expected a new name (a string), got {new!r}",
                where=f"{where}.{key}",
                hint='write outputs = { sample = "image" }: the returned name = the engine name',
            )
    names = output_names(list(value.values()), where)
    return names, tuple(value.items())


@declare({"type": "string", "minLength": 1})
def checkpoint(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(
            f"expected a path (a file or folder), got {value!r}",
            where=where,
            hint='write e.g. checkpoint = "ckpt/unet" (relative to the manifest\'s folder)',
        )
    return Path(os.path.expanduser(value)).as_posix()


@declare({"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*$"})
def method(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.isidentifier() or value.startswith("_"):
        raise ManifestError(
            f"expected a method name, got {value!r}",
            where=where,
            hint='write e.g. method = "decode" (a public method of the factory\'s module)',
        )
    return value


@declare({"type": "array", "items": {"type": "string", "pattern": "\\.npz$"}})
def npz_patterns(value, where):
    """verify.input_sets: globs of .npz files relative to the manifest's folder."""
    patterns = str_list(value, where)
    for i, pattern in enumerate(patterns):
        limits.check_pattern(pattern, f"{where}[{i}]")
        if not pattern.endswith(".npz"):
            raise ManifestError(
                f"'{pattern}' does not name .npz files",
                where=f"{where}[{i}]",
                hint="each set is one .npz holding every input by name, e.g. 'samples/*.npz'",
            )
    return patterns


@declare({"type": "string", "description": "An fsspec URL, e.g. s3://bucket/prefix"})
def remote_url(value, where):
    string(value, where)
    if value and "://" not in value:
        raise ManifestError(
            f"'{value}' is not a URL",
            where=where,
            hint="write e.g. 's3://bucket/prefix' or 'file:///mnt/share/trtforge'",
        )
    return value


@declare({"type": "object"})
def table(value, where):
    if not isinstance(value, dict):
        raise ManifestError(f"expected a table, got {type(value).__name__}", where=where)
    return dict(sorted(value.items()))


# ------------------------------------------------------------------------------------------ tables


def known_keys(raw: dict, known: Any, where: str) -> None:
    """Refuse a key of `raw` that is not among `known`, suggesting the nearest."""
    for key in raw:
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"known keys: {', '.join(known)}"
            raise ManifestError(f"unknown key '{key}'", where=f"{where}.{key}", hint=hint)


def section(raw: Any, spec: Spec, where: str, *, base: dict | None = None) -> dict:
    """Validate one table against its spec; fill defaults from `base`, else the spec."""
    if not isinstance(raw, dict):
        raise ManifestError(f"expected a table, got {type(raw).__name__}", where=where)
    known_keys(raw, spec, where)
    out = {}
    for key, (check, default) in spec.items():
        if key in raw:
            out[key] = check(raw[key], f"{where}.{key}")
        elif base is not None and key in base:
            out[key] = base[key]
        elif default is None:
            raise ManifestError(f"missing required key '{key}'", where=f"{where}.{key}")
        else:
            out[key] = default
    return out


def steps(raw: Any, where: str, keyname: str) -> tuple[dict, ...]:
    """An ordered list of {keyname = ..., params...} tables (passes or precision rules)."""
    if not isinstance(raw, list):
        raise ManifestError(f"expected a list of tables, got {type(raw).__name__}", where=where)
    out = []
    for i, step in enumerate(raw):
        w = f"{where}[{i}]"
        if isinstance(step, str):
            step = {keyname: step}
        if not isinstance(step, dict) or not isinstance(step.get(keyname), str):
            raise ManifestError(f"expected a table with a string '{keyname}'", where=w)
        out.append(dict(sorted(step.items())))
    return tuple(out)
