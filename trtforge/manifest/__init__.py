"""engines.toml, validated, every default resolved once, at the edge.

    checks.py     the validator DSL: checkers and the JSON Schema fragment each accepts
    fields.py     fields declared once: `setting(...)` -> the loader's table, the dataclass field, key material
    settings.py   every stage's settings (ExportSettings, BuildSettings, ...) and the loader's tables
    spec.py       InputSpec, ModuleSpec (as_key: the module's cache key material)
    modules.py    [modules.NAME] and [defaults] tables -> ModuleSpec
    targets.py    [targets.NAME] tables (docs/farm.md)
    pipelines.py  [pipelines.NAME] tables (docs/manifest.md)
    loader.py     Manifest, load_manifest, parse_manifest

The names below are the package's public face; import the rest from its module.
"""

from __future__ import annotations

from trtforge.manifest.checks import ALIASES, BACKENDS, DTYPES, EXPORTERS, NOT_RTX_CCS, RTX_CCS
from trtforge.manifest.fields import key_material, settings_dict
from trtforge.manifest.loader import TOP_TABLES, Manifest, load_manifest, parse_manifest, with_output_dir
from trtforge.manifest.modules import DEFAULT_KEYS, MODULE_KEYS
from trtforge.manifest.settings import (
    BUILD,
    CACHE,
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
    ToleranceSettings,
    VerifySettings,
)
from trtforge.manifest.spec import DEFAULT_SOURCE, INPUT, InputSpec, ModuleSpec

__all__ = [
    "ALIASES",
    "BACKENDS",
    "BUILD",
    "CACHE",
    "DEFAULT_KEYS",
    "DEFAULT_PASSES",
    "DEFAULT_RULES",
    "DEFAULT_SOURCE",
    "DTYPES",
    "EXPORT",
    "EXPORTERS",
    "INPUT",
    "MODULE_KEYS",
    "NOT_RTX_CCS",
    "OUTPUT_USE",
    "PASS_CHECKS",
    "PRECISION",
    "RTX_CCS",
    "TASK",
    "TOLERANCE",
    "TOP",
    "TOP_TABLES",
    "VERIFY",
    "BuildSettings",
    "ExportSettings",
    "InputSpec",
    "Manifest",
    "ModuleSpec",
    "PrecisionSettings",
    "ToleranceSettings",
    "VerifySettings",
    "key_material",
    "load_manifest",
    "parse_manifest",
    "settings_dict",
    "with_output_dir",
]
