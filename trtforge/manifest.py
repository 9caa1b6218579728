"""engines.toml: load, validate and resolve every default once, at the edge.

Two manifests that mean the same thing resolve to equal `ModuleSpec`s and so hash the same.
Every user mistake is a `ManifestError` naming the file and the dotted field.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from trtforge import input_sources, limits
from trtforge.dims import check_dim_name, check_static_preprocess, max_values, parse_profiles, profiles_key
from trtforge.errors import ManifestError

# no bfloat16: numpy, which makes the example inputs and holds every reference, has no such dtype
DTYPES = ("float16", "float32", "int64", "int32", "int8", "uint8", "bool")
BACKENDS = ("auto", "tensorrt", "tensorrt-rtx")
EXPORTERS = ("dynamo", "torchscript")
RTX_CCS = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
DEFAULT_PASSES = (
    {"name": "legalize_dtypes"},  # first: ONNX Runtime (fold_constants, meaning checks) refuses a mixed graph
    {"name": "fold_constants"},
    {"name": "fold_static_shapes"},
    {"name": "remove_identities"},
    {"name": "cleanup"},
    {"name": "toposort"},
)
PASS_CHECKS = ("each", "pipeline", "off")  # meaning check after each pass, the whole list, or none
DEFAULT_RULES = ({"rule": "attention_score", "mode": "all"},)
DEFAULT_SOURCE = {"dist": "uniform"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ----------------------------------------------------------------------------------------- schema
# A section is {key: (checker, default)}; a checker takes (value, where) and returns the value.


def _declare(check, schema: dict):
    """Attach the JSON Schema fragment a checker accepts (trtforge/schema/ is generated from them,
    so the published schema and the loader cannot drift apart)."""
    check.schema = schema
    return check


def _type(*types: type, what: str) -> Callable[[Any, str], Any]:
    def check(value, where):
        if isinstance(value, bool) and bool not in types:
            raise ManifestError(f"expected {what}, got {value!r}", where=where)
        if not isinstance(value, types):
            raise ManifestError(f"expected {what}, got {type(value).__name__} {value!r}", where=where)
        return value

    return check


_str = _declare(_type(str, what="a string"), {"type": "string"})
_bool = _declare(_type(bool, what="true or false"), {"type": "boolean"})
_int = _declare(_type(int, what="an integer"), {"type": "integer"})


def _num(value, where):
    _type(int, float, what="a number")(value, where)
    return limits.finite(float(value), where)  # TOML writes nan and inf


def _nonneg(value, where):
    value = _num(value, where)
    if value < 0:
        raise ManifestError(f"must be >= 0, got {value:g}", where=where, hint="tolerances are magnitudes")
    return value


def _fraction(value, where):
    value = _nonneg(value, where)
    if value > 1:
        raise ManifestError(f"must be a fraction in [0, 1], got {value:g}", where=where)
    return value


def _positive_int(value, where):
    _int(value, where)
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


def _one_of(choices: tuple[str, ...]):
    def check(value, where):
        _str(value, where)
        if value not in choices:
            alias = ALIASES.get(value.lower())
            near = [alias] if alias in choices else difflib.get_close_matches(value, choices, n=1)
            raise ManifestError(
                f"'{value}' is not one of {', '.join(choices)}",
                where=where,
                hint=f"did you mean '{near[0]}'?" if near else None,
            )
        return value

    return _declare(check, {"enum": list(choices)})


def _dtype(value, where):
    if isinstance(value, str) and value.lower() in ("bfloat16", "bf16"):
        raise ManifestError(
            "bfloat16 is not supported: numpy, which makes the example inputs and references, has no bfloat16",
            where=where,
            hint="use float16 (the engine runs FP16 either way) or float32",
        )
    return _one_of(DTYPES)(value, where)


def _in(lo: int, hi: int, hint: str | None = None):
    def check(value, where):
        return limits.check_int_range(_int(value, where), lo, hi, where, hint)

    return _declare(check, {"type": "integer", "minimum": lo, "maximum": hi})


def _factory(value, where):
    _str(value, where)
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", value):
        raise ManifestError(
            f"'{value}' is not 'package.module:callable'", where=where, hint="write e.g. 'examples.vit:make_vit'"
        )
    return value


def _shape(value, where):
    if not isinstance(value, list) or not value:
        raise ManifestError(f"expected a non-empty list of positive integers, got {value!r}", where=where)
    for i, d in enumerate(value):
        if isinstance(d, str):  # a named dynamic dimension; its range is dims.<name> (trtforge/dims.py)
            check_dim_name(d, f"{where}[{i}]")
        elif isinstance(d, bool) or not isinstance(d, int) or d <= 0:
            raise ManifestError(
                f"dimension {i} is {d!r}; every dimension must be a positive integer or a dimension name",
                where=where,
                hint='write a size, or a name such as "batch" with dims.batch = { min, opt, max }',
            )
    limits.check_rank(value, where)
    return tuple(value)


def _range(value, where):
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


def _cc_list(value, where):
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
        _one_of(RTX_CCS)(v, f"{where}[{i}]")
        out.append(v)
    return tuple(sorted(set(out), key=lambda s: tuple(int(p) for p in s.split("."))))


def _str_list(value, where):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"expected a list of strings, got {value!r}", where=where)
    return tuple(value)


def _names(value, where):
    names = _str_list(value, where)
    for i, n in enumerate(names):
        limits.check_tensor_name(n, "output", f"{where}[{i}]")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ManifestError(f"output '{dup}' is named twice", where=where)
    return names


def _nonempty_str(value, where):
    if not _str(value, where).strip():
        raise ManifestError("must not be empty", where=where)
    return value


def _outputs(value: Any, where: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """`outputs`: a list of names, or a table renaming the module's outputs
    (`{ sample = "image" }`: the returned name on the left, the engine's on the right)."""
    if not isinstance(value, dict):
        return _names(value, where), ()
    if not value:
        raise ManifestError("an empty table renames nothing", where=where, hint="drop outputs, or name each output")
    for key, new in value.items():
        if not isinstance(new, str):
            raise ManifestError(
                f"expected a new name (a string), got {new!r}",
                where=f"{where}.{key}",
                hint='write outputs = { sample = "image" }: the returned name = the engine name',
            )
    names = _names(list(value.values()), where)
    return names, tuple(value.items())


def _checkpoint(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(
            f"expected a path (a file or folder), got {value!r}",
            where=where,
            hint='write e.g. checkpoint = "ckpt/unet" (relative to the manifest\'s folder)',
        )
    return Path(os.path.expanduser(value)).as_posix()


def _method(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.isidentifier() or value.startswith("_"):
        raise ManifestError(
            f"expected a method name, got {value!r}",
            where=where,
            hint='write e.g. method = "decode" (a public method of the factory\'s module)',
        )
    return value


for _check, _fragment in (
    (_num, {"type": "number"}),
    (_nonneg, {"type": "number", "minimum": 0}),
    (_fraction, {"type": "number", "minimum": 0, "maximum": 1}),
    (_positive_int, {"type": "integer", "minimum": 1}),
    (_dtype, {"enum": list(DTYPES)}),
    (_factory, {"type": "string", "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"}),
    (
        _shape,
        {
            "type": "array",
            "minItems": 1,
            "maxItems": limits.MAX_RANK,
            # a size, or the name of a dynamic dimension whose range is dims.<name>
            "items": {
                "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}]
            },
        },
    ),
    (_range, {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}),
    (_cc_list, {"type": "array", "items": {"enum": [*RTX_CCS, *(float(c) for c in RTX_CCS)]}}),
    (_str_list, {"type": "array", "items": {"type": "string"}}),
    (_names, {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
    (_nonempty_str, {"type": "string", "minLength": 1}),
    (_checkpoint, {"type": "string", "minLength": 1}),
    (_method, {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*$"}),
    (
        _outputs,
        {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
            ]
        },
    ),
):
    _declare(_check, _fragment)


EXPORT = {
    "exporter": (_one_of(EXPORTERS), "dynamo"),
    "opset": (_positive_int, 20),  # the installed exporter's range is checked with the exporter
    "forbid_fp32_islands": (_bool, False),
    # module classes (or packages) whose FP32 islands are meant, e.g. ["diffusers"]: not warned
    # about, not refused by forbid_fp32_islands, still listed in the report
    "expected_fp32_islands": (_str_list, ()),
}
BUILD = {
    "backend": (_one_of(BACKENDS), "auto"),
    "optimization_level": (_in(*limits.OPTIMIZATION_LEVELS), 3),
    "workspace_mib": (_in(1, limits.MAX_WORKSPACE_MIB), 4096),
    "rtx_compute_capabilities": (_cc_list, ()),
}
TOLERANCE = {
    "atol": (_nonneg, 1e-2),
    "rtol": (_nonneg, 1e-2),
    "max_outside": (_fraction, 1e-3),
    "min_cosine": (_fraction, 0.999),
}
# task metrics per output (verify.outputs.<name>.metric): the keys each metric takes, defaults filled
TASK: dict[str, dict[str, Any]] = {
    "psnr": {"min_psnr": (_num, 40.0), "peak": (_nonneg, 0.0)},  # peak 0: the reference's range
    "iou": {
        "mask": (_one_of(("threshold", "argmax")), "threshold"),
        "threshold": (_num, 0.5),
        "axis": (_int, 1),
        "min_iou": (_fraction, 0.9),
    },
    "topk": {"k": (_positive_int, 5), "axis": (_int, -1), "min_topk": (_fraction, 0.8)},
}
# how an output is compared besides its tolerance (verify/valid.py), written only when set:
# valid = an integer or bool input, 1 at real positions: the output's elements where it is 0 are
# left out; constant_ok: the output may be constant, or have identical rows, in the FP32 reference
OUTPUT_USE = {"valid": (_nonempty_str, ""), "constant_ok": (_bool, False)}


def _patterns(value, where):
    """verify.input_sets: globs of .npz files relative to the manifest's folder."""
    patterns = _str_list(value, where)
    for i, pattern in enumerate(patterns):
        limits.check_pattern(pattern, f"{where}[{i}]")
        if not pattern.endswith(".npz"):
            raise ManifestError(
                f"'{pattern}' does not name .npz files",
                where=f"{where}[{i}]",
                hint="each set is one .npz holding every input by name, e.g. 'samples/*.npz'",
            )
    return patterns


_declare(_patterns, {"type": "array", "items": {"type": "string", "pattern": "\\.npz$"}})
VERIFY = {
    **TOLERANCE,
    "random_inputs": (_in(0, limits.MAX_RANDOM_INPUTS), 0),
    "seed": (_int, 0),
    # named example sets, each verified like the example set (labelled by its path)
    "input_sets": (_patterns, ()),
    # dynamic dims: seeded random shapes checked inside each profile, besides its min, opt, max
    "shapes": (_in(0, limits.MAX_RANDOM_INPUTS), 2),
}
PRECISION = {"realizer": (_one_of(("casts", "layer_precision", "auto")), "auto")}
# arg: the forward() parameter the input binds to ("" = the input's own name)
INPUT = {"shape": (_shape, None), "dtype": (_dtype, "float16"), "range": (_range, (-1.0, 1.0)), "arg": (_str, "")}
TOP = {
    "cache_dir": (_nonempty_str, ".trtforge-cache"),
    "output_dir": (_nonempty_str, "engines"),
    # an output folder outside the manifest's folder is refused unless this says it is meant
    "output_dir_outside": (_bool, False),
    # files in the output folder that trtforge did not write are refused unless this is set
    "allow_foreign_files": (_bool, False),
}


def _remote_url(value, where):
    _str(value, where)
    if value and "://" not in value:
        raise ManifestError(
            f"'{value}' is not a URL",
            where=where,
            hint="write e.g. 's3://bucket/prefix' or 'file:///mnt/share/trtforge'",
        )
    return value


def _table(value, where):
    if not isinstance(value, dict):
        raise ManifestError(f"expected a table, got {type(value).__name__}", where=where)
    return dict(sorted(value.items()))


_declare(_remote_url, {"type": "string", "description": "An fsspec URL, e.g. s3://bucket/prefix"})
_declare(_table, {"type": "object"})
# [cache]: the shared remote cache (docs/farm.md); credentials never go here (environment only)
CACHE = {"remote": (_remote_url, ""), "read_only": (_bool, False), "options": (_table, {})}


def _section(raw: Any, spec: dict, where: str, *, base: dict | None = None) -> dict:
    """Validate one table against its spec; fill defaults from `base`, else the spec."""
    if not isinstance(raw, dict):
        raise ManifestError(f"expected a table, got {type(raw).__name__}", where=where)
    for key in raw:
        if key not in spec:
            near = difflib.get_close_matches(key, list(spec), n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"known keys: {', '.join(spec)}"
            raise ManifestError(f"unknown key '{key}'", where=f"{where}.{key}", hint=hint)
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


def _steps(raw: Any, where: str, keyname: str) -> tuple[dict, ...]:
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


# ------------------------------------------------------------------------------------------ specs


@dataclass(frozen=True)
class ExportSettings:
    """[export]: how the module becomes ONNX (key material of the export stage)."""

    exporter: str
    opset: int
    forbid_fp32_islands: bool
    expected_fp32_islands: tuple[str, ...] = ()

    def expects(self, island: dict) -> bool:
        """An island the manifest says is meant: its module class is, or lies in, a listed name."""
        cls = island.get("in", "")
        return any(cls == p or cls.startswith(p + ".") for p in self.expected_fp32_islands)


@dataclass(frozen=True)
class BuildSettings:
    """[build]: how the engine is built (key material of the build stage)."""

    backend: str
    optimization_level: int
    workspace_mib: int
    rtx_compute_capabilities: tuple[str, ...]


@dataclass(frozen=True)
class PrecisionSettings:
    """[precision] besides its rules: how FP32 islands are realised."""

    realizer: str


@dataclass(frozen=True)
class VerifySettings:
    """[verify]: the tolerance every check holds an output to, and the extra input sets."""

    atol: float
    rtol: float
    max_outside: float
    min_cosine: float
    random_inputs: int
    seed: int
    input_sets: tuple[str, ...] = ()  # globs of named example sets (.npz), relative to the manifest
    shapes: int = 2  # seeded random shapes per optimization profile (dynamic dims only)


def settings_dict(settings) -> dict:
    """A settings dataclass as the plain dict its cache key material is made of."""
    return dataclasses.asdict(settings)


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | str, ...]  # a str is a named dynamic dimension (ModuleSpec.profiles)
    dtype: str
    range: tuple[float, float]
    arg: str = ""  # the forward() parameter it binds to; resolved to `name` when not written
    # where the example values come from (trtforge/input_sources.py): uniform in `range` by default
    source: dict = field(default_factory=lambda: dict(DEFAULT_SOURCE))

    def as_key(self) -> dict:
        # the default source is left out: a manifest written before sources existed keeps its keys
        key = {k: v for k, v in vars(self).items() if k != "source" or v != DEFAULT_SOURCE}
        if input_sources.is_outside(self.source.get("file", "")):
            # data outside the project: keyed by content (example_data), not by this machine's folder
            key["source"] = {**self.source, "file": "<outside>/" + Path(self.source["file"]).name}
        return key


@dataclass(frozen=True)
class ModuleSpec:
    """Everything about one module, every default resolved. `as_key()` is its cache key material."""

    name: str
    factory: str
    factory_args: dict
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    depends: tuple[str, ...]
    export: ExportSettings
    passes: tuple[dict, ...]
    precision_rules: tuple[dict, ...]
    precision: PrecisionSettings
    build: BuildSettings
    verify: VerifySettings
    verify_outputs: dict = field(default_factory=dict)
    pass_check: str = "each"
    # factory_args keys whose values are paths relative to the manifest's folder (see factory_kwargs)
    factory_paths: tuple[str, ...] = ()
    profiles: tuple = ()  # optimization profiles of the named dims (trtforge/dims.py); () = static
    # a checkpoint file or folder (relative to the manifest, or absolute) the factory receives as
    # its first argument; its content, not its path, keys the export (export.checkpoint_digests)
    checkpoint: str = ""
    method: str = "forward"  # the method exported (e.g. AutoencoderKL's "decode")
    # (returned name, engine name) pairs of `outputs = { sample = "image" }`; () = no renaming
    output_renames: tuple[tuple[str, str], ...] = ()

    def as_key(self) -> dict:
        # static modules keep the key they always had: "profiles" appears only when there are some;
        # so do "checkpoint" and "method" (export keys them: the checkpoint by content)
        return (
            ({"profiles": profiles_key(self.profiles)} if self.profiles else {})
            | ({"checkpoint": self.checkpoint} if self.checkpoint else {})
            | ({"method": self.method} if self.method != "forward" else {})
        ) | {
            "name": self.name,
            "factory": self.factory,
            "factory_args": self.factory_args,
            "inputs": [i.as_key() for i in self.inputs],
            "outputs": dict(self.output_renames) if self.output_renames else list(self.outputs),
            "depends": list(self.depends),
            # expected_fp32_islands only when written: the keys of manifests without it stay
            "export": {k: v for k, v in settings_dict(self.export).items() if k != "expected_fp32_islands" or v},
            "passes": list(self.passes),
            "precision_rules": list(self.precision_rules),
            "precision": settings_dict(self.precision),
            "build": settings_dict(self.build),
            "verify": settings_dict(self.verify),
            "verify_outputs": self.verify_outputs,
            "pass_check": self.pass_check,
            "factory_paths": list(self.factory_paths),
        }

    def factory_kwargs(self, root: Path) -> dict:
        """factory_args as the factory receives them: each value named in factory_paths resolved
        against the manifest's folder `root` (an absolute path stays as written). Resolved here,
        at the call, not in the spec: the key holds the path as written, so a moved project
        keeps its cache."""
        return {k: (str(root / v) if k in self.factory_paths else v) for k, v in self.factory_args.items()}

    def checkpoint_path(self, root: Path) -> Path | None:
        """The checkpoint the factory receives, resolved against the manifest's folder."""
        return root / self.checkpoint if self.checkpoint else None

    def factory_path_files(self, root: Path) -> list[Path]:
        """The files factory_paths name (folders are passed, not hashed: list their files in depends)."""
        return [root / self.factory_args[k] for k in self.factory_paths if (root / self.factory_args[k]).is_file()]

    def tolerance(self, output: str) -> dict:
        tol = {k: getattr(self.verify, k) for k in TOLERANCE}
        tol.update(self.verify_outputs.get(output, {}))
        return tol


@dataclass(frozen=True)
class Manifest:
    path: Path
    root: Path  # the folder the manifest lives in: factories import and paths resolve from here
    cache_dir: Path
    output_dir: Path
    modules: tuple[ModuleSpec, ...]
    allow_foreign_files: bool = False
    cache: dict = field(default_factory=dict)  # [cache]: remote, read_only, options
    targets: tuple = ()  # [targets.NAME]: trtforge.targets.TargetSpec; () = the default target
    pipelines: tuple = ()  # [pipelines.NAME]: trtforge.pipeline_manifest.PipelineSpec

    def module(self, name: str) -> ModuleSpec:
        for m in self.modules:
            if m.name == name:
                return m
        known = [m.name for m in self.modules]
        near = difflib.get_close_matches(name, known, n=1)
        raise ManifestError(
            f"no module '{name}'",
            where=str(self.path),
            hint=f"did you mean '{near[0]}'?" if near else f"modules: {', '.join(known)}",
        )


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


def _module(name: str, raw: Any, defaults: dict, where: str) -> ModuleSpec:
    if not _NAME_RE.match(name) or ".." in name:
        raise ManifestError(
            f"module name '{name}' must be letters, digits, '_', '-', '.' (no path separators or '..')", where=where
        )
    limits.check_name(name, "module", where)
    if not isinstance(raw, dict):
        raise ManifestError(f"expected a table, got {type(raw).__name__}", where=where)
    _section({k: None for k in raw}, {k: (lambda v, w: v, 0) for k in MODULE_KEYS}, where)
    if "factory" not in raw:
        raise ManifestError(
            "missing required key 'factory'", where=f"{where}.factory", hint="write factory = 'package.module:callable'"
        )
    factory = _factory(raw["factory"], f"{where}.factory")
    fargs = raw.get("factory_args", {})
    if not isinstance(fargs, dict):
        raise ManifestError("expected a table of keyword arguments", where=f"{where}.factory_args")
    fpaths = _factory_paths(raw.get("factory_paths", []), fargs, f"{where}.factory_paths")
    raw_inputs = raw.get("inputs")
    if not isinstance(raw_inputs, dict) or not raw_inputs:
        raise ManifestError("expected a table name -> {shape, dtype, range}", where=f"{where}.inputs")
    inputs = tuple(_input(k, v, f"{where}.inputs.{k}") for k, v in raw_inputs.items())
    profiles = parse_profiles(raw, inputs, where)
    outputs, renames = _outputs(raw.get("outputs", []), f"{where}.outputs")
    checkpoint = _checkpoint(raw["checkpoint"], f"{where}.checkpoint") if "checkpoint" in raw else ""
    method = _method(raw.get("method", "forward"), f"{where}.method")
    depends = _str_list(raw.get("depends", []), f"{where}.depends")
    for i, pattern in enumerate(depends):
        limits.check_pattern(pattern, f"{where}.depends[{i}]")

    precision_raw = dict(raw.get("precision", {})) if isinstance(raw.get("precision", {}), dict) else None
    if precision_raw is None:
        raise ManifestError("expected a table", where=f"{where}.precision")
    rules_raw = precision_raw.pop("rules", None)
    rules = (
        _steps(rules_raw, f"{where}.precision.rules", "rule") if rules_raw is not None else defaults["precision_rules"]
    )
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
    _check_valid_inputs(per_output, inputs, f"{where}.verify.outputs")

    export = _section(raw.get("export", {}), EXPORT, f"{where}.export", base=defaults["export"])
    limits.check_opset(export, f"{where}.export")
    if profiles and export["exporter"] != "dynamo":
        raise ManifestError(
            "dynamic dimensions need the dynamo exporter (torch.export Dims)",
            where=f"{where}.export.exporter",
            hint='set export.exporter = "dynamo"',
        )
    verify = _section(verify_raw, VERIFY, f"{where}.verify", base=defaults["verify"])
    # the largest shapes bound the memory: sets at every profile point, each at most the max shape
    sets = 1 + verify["random_inputs"] + (3 + verify["shapes"]) * len(profiles)
    limits.check_input_sizes(inputs, sets, where, max_values(profiles))
    passes = _steps(raw["passes"], f"{where}.passes", "name") if "passes" in raw else defaults["passes"]
    from trtforge.io_transforms import parse as parse_transform  # bake-pass parameters, checked now

    for i, step in enumerate(passes):
        parse_transform(step, f"{where}.passes[{i}]")
    check_static_preprocess(passes, inputs, f"{where}.passes")
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
        precision=PrecisionSettings(
            **_section(precision_raw, PRECISION, f"{where}.precision", base=defaults["precision"])
        ),
        build=BuildSettings(**_section(raw.get("build", {}), BUILD, f"{where}.build", base=defaults["build"])),
        verify=VerifySettings(**verify),
        verify_outputs=per_output,
        pass_check=(
            _one_of(PASS_CHECKS)(raw["pass_check"], f"{where}.pass_check")
            if "pass_check" in raw
            else defaults["pass_check"]
        ),
        factory_paths=fpaths,
        profiles=profiles,
        checkpoint=checkpoint,
        method=method,
        output_renames=renames,
    )


def _factory_paths(value: Any, fargs: dict, where: str) -> tuple[str, ...]:
    """Names of factory_args that hold paths: each a key of factory_args whose value is a string."""
    names = _str_list(value, where)
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


def _input(name: str, raw: Any, where: str) -> InputSpec:
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
    fields = _section({k: v for k, v in raw.items() if k in INPUT}, INPUT, where)
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


def _check_valid_inputs(per_output: dict, inputs: tuple[InputSpec, ...], where: str, owner: str = "module") -> None:
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
        spec.update(TASK[_one_of(tuple(TASK))(metric, f"{where}.metric")])
    for key in raw:
        if key not in spec:
            owner = next((m for m, keys in TASK.items() if key in keys), None)
            near = difflib.get_close_matches(key, [*spec, "metric"], n=1)
            hint = f"'{key}' belongs to metric = '{owner}'" if owner else f"did you mean '{near[0]}'?" if near else None
            raise ManifestError(f"unknown key '{key}'", where=f"{where}.{key}", hint=hint)
    out = {k: spec[k][0](v, f"{where}.{k}") for k, v in sorted(raw.items()) if k in TOLERANCE or k in OUTPUT_USE}
    if metric is not None:
        out["metric"] = metric
        out.update(_section({k: v for k, v in raw.items() if k in TASK[metric]}, TASK[metric], where))
    return dict(sorted(out.items()))


def _defaults(raw: Any, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ManifestError("expected a table", where=where)
    _section({k: None for k in raw}, {k: (lambda v, w: v, 0) for k in (*DEFAULT_KEYS, *TOP)}, where)
    if not isinstance(raw.get("precision", {}), dict):
        raise ManifestError("expected a table", where=f"{where}.precision")
    precision = dict(raw.get("precision", {}))
    rules = precision.pop("rules", None)
    return {
        "export": _section(raw.get("export", {}), EXPORT, f"{where}.export"),
        "passes": _steps(raw["passes"], f"{where}.passes", "name") if "passes" in raw else DEFAULT_PASSES,
        "precision_rules": (_steps(rules, f"{where}.precision.rules", "rule") if rules is not None else DEFAULT_RULES),
        "precision": _section(precision, PRECISION, f"{where}.precision"),
        "build": _section(raw.get("build", {}), BUILD, f"{where}.build"),
        "verify": _section(raw.get("verify", {}), VERIFY, f"{where}.verify"),
        "pass_check": (
            _one_of(PASS_CHECKS)(raw["pass_check"], f"{where}.pass_check") if "pass_check" in raw else "each"
        ),
        **_section({k: raw[k] for k in TOP if k in raw}, TOP, where),
    }


_MODULE_HEADER = re.compile(r'^\s*\[\s*modules\s*\.\s*("([^"]+)"|[A-Za-z0-9_.-]+?)\s*\]\s*(#.*)?$')


def _duplicate_module(text: str) -> tuple[str, int, int] | None:
    """(name, first line, second line) of a [modules.NAME] table declared twice: tomllib's own
    message ("Cannot declare ('modules', 'x') twice") names neither the module nor the first line."""
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _MODULE_HEADER.match(line)
        if m:
            name = m.group(2) or m.group(1)
            if name in seen:
                return name, seen[name], lineno
            seen[name] = lineno
    return None


TOP_TABLES = ("defaults", "modules", "cache", "targets", "pipelines")


def parse_manifest(text: str, path: Path) -> Manifest:
    from trtforge.pipeline_manifest import parse_pipelines
    from trtforge.targets import parse_targets

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        dup = _duplicate_module(text)
        if dup:
            raise ManifestError(
                f"module '{dup[0]}' is defined twice (lines {dup[1]} and {dup[2]})",
                where=str(path),
                hint="module names must be unique; rename one",
            ) from None
        raise ManifestError(f"TOML syntax error: {e}", where=str(path), hint="fix the line and column named") from None
    where = path.name
    for key in data:
        if key not in TOP_TABLES:
            near = difflib.get_close_matches(key, list(TOP_TABLES), n=1)
            raise ManifestError(
                f"unknown top-level table '{key}'",
                where=f"{where}: {key}",
                hint=f"did you mean '{near[0]}'?" if near else "modules go under [modules.NAME]",
            )
    defaults = _defaults(data.get("defaults", {}), f"{where}: defaults")
    raw_modules = data.get("modules")
    if not isinstance(raw_modules, dict) or not raw_modules:
        raise ManifestError("no modules", where=f"{where}: modules", hint="add a [modules.NAME] table")
    modules = tuple(_module(name, raw, defaults, f"{where}: modules.{name}") for name, raw in raw_modules.items())
    root = path.resolve().parent
    cache_dir = root / defaults["cache_dir"]
    output_dir = root / defaults["output_dir"]
    _check_output_dir(output_dir, cache_dir, root, defaults["output_dir_outside"], f"{where}: defaults.output_dir")
    return Manifest(
        path=path,
        root=root,
        cache_dir=cache_dir,
        output_dir=output_dir,
        modules=modules,
        allow_foreign_files=defaults["allow_foreign_files"],
        cache=_section(data.get("cache", {}), CACHE, f"{where}: cache"),
        targets=parse_targets(data.get("targets"), f"{where}: targets"),
        pipelines=parse_pipelines(data.get("pipelines"), modules, f"{where}: pipelines"),
    )


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_output_dir(out: Path, cache: Path, root: Path, outside_ok: bool, where: str) -> None:
    """trtforge deletes what it published there and refuses foreign files; a folder that holds the
    project, the home folder or the whole disk must never be that folder. Symlinks resolved first."""
    out, cache = Path(os.path.realpath(out)), Path(os.path.realpath(cache))
    home = Path(os.path.realpath(Path.home()))
    hint = "set output_dir to a folder of its own inside the project, e.g. 'engines'"
    if out == Path(out.anchor) or _inside(home, out):
        raise ManifestError(f"'{out}' is the root or home folder (or contains it)", where=where, hint=hint)
    if _inside(root, out):
        raise ManifestError(f"'{out}' is the manifest's own folder or contains it", where=where, hint=hint)
    if _inside(out, cache) or _inside(cache, out):
        raise ManifestError(f"'{out}' overlaps the cache folder '{cache}'", where=where, hint=hint)
    if not outside_ok and not _inside(out, root):
        raise ManifestError(
            f"'{out}' is outside the manifest's folder '{root}'",
            where=where,
            hint="move it inside, or set output_dir_outside = true in [defaults] if meant",
        )


def with_output_dir(manifest: Manifest, path: str | Path, where: str = "--output-dir") -> Manifest:
    """The manifest publishing into `path` instead (a command-line or $TRTFORGE_OUTPUT_DIR
    override, relative to the current folder). Asked for explicitly, so it may lie outside the
    manifest's folder; every other rule of output_dir holds."""
    out = Path(path).absolute()
    _check_output_dir(out, manifest.cache_dir, manifest.root, True, f"{where} {path}")
    return dataclasses.replace(manifest, output_dir=out)


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        text = _read_capped(path)
    except FileNotFoundError:
        raise ManifestError("file not found", where=str(path), hint="pass the path of an engines.toml") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read: {e}", where=str(path)) from None
    return parse_manifest(text, path)


def _read_capped(path: Path) -> str:
    """The manifest's text, refusing what is not a regular file (a FIFO would block, /dev/zero
    never ends) and reading at most MAX_MANIFEST_BYTES + 1 bytes."""
    import stat

    mode = path.stat().st_mode  # before open: opening a FIFO blocks
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise ManifestError(f"is {kind}", where=str(path), hint="pass the path of an engines.toml")
    with open(path, "rb") as f:
        data = f.read(limits.MAX_MANIFEST_BYTES + 1)
    if len(data) > limits.MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"is larger than the {limits.MAX_MANIFEST_BYTES >> 10} KiB a manifest may be",
            where=str(path),
            hint="pass the path of an engines.toml",
        )
    return data.decode("utf-8")
