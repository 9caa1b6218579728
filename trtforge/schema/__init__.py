"""The JSON Schema of engines.toml, generated from the manifest loader's own section tables (each
checker declares the fragment it accepts), and shipped as `engines.schema.json` beside this file so
editors (Even Better TOML / taplo, via a `#:schema` line) validate and complete a manifest.

    python -m trtforge.schema          # rewrite engines.schema.json after changing the loader

tests/test_schema.py fails when the shipped file and the loader disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trtforge import manifest as m
from trtforge.manifest import checks, fields, limits
from trtforge.manifest.pipelines import PIPELINE_KEYS, SEQUENCE
from trtforge.manifest.targets import TargetSpec, target_keys

SCHEMA_FILE = Path(__file__).with_name("engines.schema.json")


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_default(v) for v in value]
    return value


fragment = checks.fragment  # the JSON Schema fragment a manifest checker declared


def section(spec: dict, description: str = "", *, required: tuple[str, ...] = (), docs: tuple[type, ...] = ()) -> dict:
    """A table of the loader's {key: (checker, default)}: each key's fragment with its default, and
    its doc where a dataclass of `docs` declares the key (manifest/fields.py `setting(doc=...)`)."""
    described = {k: v for cls in docs for k, v in fields.docs(cls).items()}
    props = {}
    for key, (check, default) in spec.items():
        entry = fragment(check)
        if default is not None:
            entry["default"] = _json_default(default)
        if key in described:
            entry["description"] = described[key]
        props[key] = entry
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def named_tables(table: dict, description: str = "") -> dict:
    """`[kind.NAME]` tables (targets, and any later table of named entries): each NAME one `table`."""
    out: dict[str, Any] = {
        "type": "object",
        "additionalProperties": table,
        "propertyNames": {"pattern": checks.NAME_RE.pattern, "maxLength": limits.MAX_NAME_CHARS},
    }
    if description:
        out["description"] = description
    return out


def steps(keyname: str, description: str) -> dict:
    """An ordered list of passes or rules: a name, or a table with the name and its parameters."""
    item = {
        "anyOf": [
            {"type": "string"},
            {"type": "object", "required": [keyname], "properties": {keyname: {"type": "string"}}},
        ]
    }
    return {"type": "array", "items": item, "description": description}


def _precision() -> dict:
    out = section(m.PRECISION, "How FP32 islands are chosen (rules) and realised.", docs=(m.PrecisionSettings,))
    out["properties"]["rules"] = steps("rule", "Precision rules, in order; replaces the default list.")
    return out


def _per_output() -> dict:
    spec = {**m.TOLERANCE, **m.OUTPUT_USE}
    for keys in m.TASK.values():
        spec.update(keys)
    out = section(spec, "Tolerance overrides and an optional task metric for one output.", docs=(m.ToleranceSettings,))
    for props in out["properties"].values():
        props.pop("default", None)  # the module's tolerance, or the metric's own default
    out["properties"]["metric"] = {"enum": list(m.TASK)}
    return out


def _verify() -> dict:
    out = section(
        m.VERIFY, "The tolerance every check holds an output to, and the extra input sets.", docs=(m.VerifySettings,)
    )
    out["properties"]["outputs"] = {"type": "object", "additionalProperties": _per_output()}
    return out


def _input() -> dict:
    """One example input: shape/dtype/range/arg, and where its values come from (input_sources)."""
    from trtforge.data import sources as src

    out = section(m.INPUT, "One example input.", required=("shape",), docs=(m.InputSpec,))
    num, chans = {"type": "number"}, {"anyOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]}
    out["properties"].update(
        {
            "file": {"type": "string", "description": ".npy, .npz (with key) or an image, relative to the manifest"},
            "key": {"type": "string"},
            "value": {"type": ["number", "boolean"]},
            "dist": {"enum": list(src.DISTS)},
            "mean": chans,
            "std": chans,
            "scale": num,
            "kind": {"enum": list(src.KINDS)},
            "vocab_size": {"type": "integer", "minimum": 1},
            "pad": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]},
            "side": {"enum": ["right", "left"]},
            "start": {"type": "integer"},
            "layout": {"enum": sorted({lay for lays in src.LAYOUTS.values() for lay in lays})},
        }
    )
    missing = set(src.SOURCE_KEYS) - set(out["properties"])
    if missing:  # a key the loader takes and the schema does not describe: fail here, not in an editor
        raise RuntimeError(f"schema: input keys without a fragment: {sorted(missing)}")
    return out


def _stage_sections() -> dict:
    return {
        "export": section(m.EXPORT, "How the module becomes ONNX.", docs=(m.ExportSettings,)),
        "build": section(m.BUILD, "How the engine is built.", docs=(m.BuildSettings,)),
        "verify": _verify(),
        "precision": _precision(),
        "passes": steps("name", "Graph passes, in order; replaces the default list."),
        "pass_check": {"enum": list(m.PASS_CHECKS), "default": "each"},
    }


def _dims() -> dict:
    """Dynamic dimensions (trtforge/data/dims.py): dims.NAME = {min, opt, max[, multiple_of]} or a size,
    or several profiles, each a table of them."""
    pos = {"type": "integer", "minimum": 1}
    rng = {
        "anyOf": [
            pos,
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["min", "opt", "max"],
                "properties": {"min": pos, "opt": pos, "max": pos, "multiple_of": pos},
            },
        ]
    }
    table = {"type": "object", "additionalProperties": rng}
    return {
        "dims": {**table, "description": "Ranges of the named dims in input shapes: one optimization profile."},
        "profiles": {
            "type": "array",
            "minItems": 1,
            "items": table,
            "description": "Several optimization profiles (instead of dims), each naming every dim.",
        },
    }


def _module() -> dict:
    stage = _stage_sections()
    props = {
        "factory": {
            **fragment(checks.factory),
            "description": "package.module:callable, imported from the manifest's folder",
        },
        "factory_args": {"type": "object", "description": "Keyword arguments of the factory."},
        "factory_paths": {
            "type": "array",
            "items": {"type": "string"},
            "description": "factory_args keys whose values are paths relative to the manifest's folder.",
        },
        "inputs": {"type": "object", "minProperties": 1, "additionalProperties": _input()},
        "outputs": {
            **fragment(checks.outputs),
            "description": 'Names of the returned tensors, or a table renaming them: { sample = "image" }.',
        },
        "checkpoint": {
            **fragment(checks.checkpoint),
            "description": "A file or folder (e.g. save_pretrained's) the factory receives; keyed by content.",
        },
        "method": {**fragment(checks.method), "default": "forward", "description": "The method exported."},
        "depends": {
            **fragment(checks.str_list),
            "description": "Globs (relative to the manifest) whose files key the export.",
        },
        **_dims(),
        **{k: stage[k] for k in m.MODULE_KEYS if k in stage},
    }
    if set(props) != set(m.MODULE_KEYS):  # fail here, not in an editor
        raise RuntimeError(f"schema: module keys without a fragment: {sorted(set(m.MODULE_KEYS) - set(props))}")
    return {"type": "object", "additionalProperties": False, "required": ["factory", "inputs"], "properties": props}


def _defaults() -> dict:
    stage = _stage_sections()
    top = section(m.TOP)["properties"]
    props = {**{k: stage[k] for k in m.DEFAULT_KEYS}, **top}
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        "description": "Applies to every module; each key optional.",
    }


def _pipeline() -> dict:
    """[pipelines.NAME] (trtforge/manifest/pipelines.py): modules composed by a runner."""
    per_output = _per_output()
    per_output["properties"]["metric"] = {"enum": [*m.TASK, "sequence"]}
    per_output["properties"].update({k: fragment(c) for k, (c, _) in SEQUENCE.items()})
    props = {
        "modules": {
            **fragment(checks.str_list),
            "minItems": 1,
            "description": "Modules of this manifest the runner calls.",
        },
        "runner": {
            **fragment(checks.factory),
            "description": "package.module:callable; runner(m, **inputs, **runner_args)",
        },
        "runner_args": {"type": "object", "description": "Keyword arguments of the runner."},
        "inputs": {"type": "object", "additionalProperties": _input()},
        "outputs": {"type": "object", "minProperties": 1, "additionalProperties": per_output},
        "seed": {"type": "integer", "default": 0},
    }
    if set(props) != set(PIPELINE_KEYS):  # a key the loader takes and the schema does not describe
        raise RuntimeError(f"schema: pipeline keys without a fragment: {sorted(set(PIPELINE_KEYS) ^ set(props))}")
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["modules", "runner", "outputs"],
        "properties": props,
    }


def _pipelines() -> dict:
    return named_tables(_pipeline(), "Modules composed end to end by a runner, checked against the FP32 pipeline.")


def _modules() -> dict:
    return {"minProperties": 1, **named_tables(_module(), "One table per module.")}


def _cache() -> dict:
    return section(m.CACHE, "The shared remote cache (docs/farm.md); credentials come from the environment only.")


def _targets() -> dict:
    table = section(
        target_keys(),
        "A backend and what it builds for, with builder options over the module's.",
        docs=(m.BuildSettings, TargetSpec),
    )
    table["required"] = ["backend"]
    table["properties"]["gpu"].pop("default", None)  # "" is unset, not a value to write
    return named_tables(table, "Build targets (docs/farm.md); none: the default target.")


# Every top-level table the loader accepts (manifest.TOP_TABLES), each with the function that
# makes its schema. A new table adds one line here (a table of named entries: named_tables); the
# schema refuses to generate while a table the loader accepts has none.
TABLES: dict[str, Any] = {
    "defaults": _defaults,
    "modules": _modules,
    "cache": _cache,
    "targets": _targets,
    "pipelines": _pipelines,
}


def generate() -> dict:
    missing = [t for t in m.TOP_TABLES if t not in TABLES]
    if missing:
        raise RuntimeError(f"schema: top-level tables without a schema: {missing} (add them to TABLES)")
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "trtforge engines.toml",
        "type": "object",
        "additionalProperties": False,
        "required": ["modules"],
        "properties": {name: TABLES[name]() for name in m.TOP_TABLES},
    }


def text() -> str:
    return json.dumps(generate(), indent=1, sort_keys=True) + "\n"
