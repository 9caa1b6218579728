"""Fields declared once: one `setting(...)` per dataclass field gives its checker (and so its
JSON Schema fragment), its default, its doc and how it enters the cache key material.

    @dataclass(frozen=True)
    class BuildSettings:
        workspace_mib: int = setting(checks.int_in(1, 4096), 4096, doc="...")

    BUILD = spec_table(BuildSettings)      # {"workspace_mib": (checker, 4096)}: the loader's table
    key_material(settings)                 # {"workspace_mib": 4096}: what the cache key holds

A field's key policy: `key=` a function of the owning object (e.g. the inputs' own key
material), `keyed=False` (not keyed by itself), `when_set=True` (keyed only when it differs from
its default, so manifests written before the field existed keep their keys).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from trtforge.manifest.checks import CheckFn, Spec

REQUIRED: Any = dataclasses.MISSING  # a setting without a default: the manifest must write it


def setting(
    check: CheckFn | None = None,
    default: Any = REQUIRED,
    *,
    factory: Callable[[], Any] | None = None,
    doc: str = "",
    key: Callable[[Any], Any] | None = None,
    keyed: bool = True,
    when_set: bool = False,
) -> Any:
    """A dataclass field declared once (see the module's docstring). `check` None: the field is
    not a key of a manifest table by itself (the loader fills it from elsewhere)."""
    metadata = {"check": check, "doc": doc, "key": key, "keyed": keyed, "when_set": when_set}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def spec_table(cls: type) -> Spec:
    """The loader's table of a dataclass: {field: (checker, default)} for each field with a
    checker, in declaration order; default None: required."""
    return {
        f.name: (f.metadata["check"], _default(f))
        for f in dataclasses.fields(cls)
        if f.metadata.get("check") is not None
    }


def docs(cls: type) -> dict[str, str]:
    """Each declared field's doc (what it means, in the manifest's words)."""
    return {f.name: f.metadata["doc"] for f in dataclasses.fields(cls) if f.metadata.get("doc")}


def key_material(obj: Any) -> dict:
    """The cache key material of a dataclass built from `setting` fields, by each field's policy."""
    out = {}
    for f in dataclasses.fields(obj):
        meta = f.metadata
        value = getattr(obj, f.name)
        if not meta.get("keyed", True) or (meta.get("when_set") and value == _default(f)):
            continue
        out[f.name] = meta["key"](obj) if meta.get("key") else value
    return out


def settings_dict(settings: Any) -> dict:
    """A settings dataclass as the plain dict its records hold: every field, as set."""
    return dataclasses.asdict(settings)
