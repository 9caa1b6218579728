"""Build targets: `[targets.NAME]` tables, each a backend and what it builds for (TensorRT-RTX
compute capabilities, or the GPU model a TensorRT engine must be built on) plus builder options.

Export, graph passes and precision rules never read a target, so their keys (and records) are the
same for every target: they run once per module. Build and engine verification run per target,
each under a module spec whose build settings carry the target's. A manifest without targets has
one implicit default target: today's behaviour, keys and `engines/<rtx-sm...>` folder.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from trtforge.errors import ManifestError, TrtforgeError
from trtforge.manifest import checks as c
from trtforge.manifest.fields import setting, spec_table
from trtforge.manifest.settings import BUILD
from trtforge.manifest.spec import ModuleSpec

OVERRIDES = tuple(BUILD)  # every BuildSettings field: a target may set each over the module's


@dataclass(frozen=True)
class TargetSpec:
    name: str = setting()
    overrides: tuple[tuple[str, Any], ...] = setting()  # (BuildSettings field, value) pairs the target sets
    gpu: str = setting(
        c.nonempty_str, "", doc="TensorRT: the GPU model (a case-insensitive part of nvidia-smi's name)."
    )
    timing_cache: bool = setting(c.boolean, True, doc="TensorRT: keep a timing cache per target in the trtforge cache.")

    @property
    def backend(self) -> str | None:
        return dict(self.overrides).get("backend")


class TargetUnavailable(TrtforgeError):
    """--require-target: a target this machine cannot build (its GPU is absent). Exit 3."""

    stage = "build"
    exit_code = 3


def target_keys() -> dict:
    """A [targets.NAME] table's keys: {key: (checker, default)}; None: unset, the module's holds."""
    return {
        **{k: (BUILD[k][0], None) for k in OVERRIDES},
        "backend": (c.one_of(c.BACKENDS[1:]), None),  # a target names its backend: no "auto"
        **spec_table(TargetSpec),
    }


def parse_targets(raw: Any, where: str) -> tuple[TargetSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise ManifestError("expected [targets.NAME] tables", where=where)
    spec = target_keys()
    out = []
    for name, table in raw.items():
        w = f"{where}.{name}"
        if not c.NAME_RE.match(name) or ".." in name:
            raise ManifestError(f"target name '{name}' must be letters, digits, '_', '-', '.'", where=w)
        fields = c.section(table, {k: (c, d if d is not None else _UNSET) for k, (c, d) in spec.items()}, w)
        backend = fields["backend"]
        if backend is _UNSET:
            raise ManifestError(
                "missing required key 'backend'",
                where=f"{w}.backend",
                hint="write backend = 'tensorrt-rtx' or 'tensorrt'",
            )
        if backend == "tensorrt" and not fields["gpu"]:
            raise ManifestError(
                "a TensorRT target names the GPU it is built on",
                where=f"{w}.gpu",
                hint="write e.g. gpu = 'H100' (part of the name nvidia-smi prints)",
            )
        if backend == "tensorrt-rtx" and fields["gpu"]:
            raise ManifestError(
                "TensorRT-RTX targets compute capabilities, not a GPU model",
                where=f"{w}.gpu",
                hint="write rtx_compute_capabilities = ['8.6', '8.9'] instead",
            )
        if backend == "tensorrt" and fields["rtx_compute_capabilities"] is not _UNSET:
            raise ManifestError(
                "rtx_compute_capabilities is for tensorrt-rtx targets", where=f"{w}.rtx_compute_capabilities"
            )
        overrides = tuple((k, fields[k]) for k in OVERRIDES if fields[k] is not _UNSET)
        out.append(TargetSpec(name, overrides, fields["gpu"], fields["timing_cache"]))
    return tuple(out)


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


def for_target(module: ModuleSpec, target: TargetSpec | None) -> ModuleSpec:
    """The module spec a target builds: its build settings with the target's written over them."""
    if target is None:
        return module
    return dataclasses.replace(module, build=dataclasses.replace(module.build, **dict(target.overrides)))


def unavailable(target: TargetSpec) -> str | None:
    """Why this machine cannot build `target` ("needs H100"), or None. TensorRT-RTX builds
    anywhere; TensorRT needs its GPU model present (cheap: nvidia-smi, no CUDA import)."""
    if target.backend != "tensorrt":
        return None
    from trtforge import backends as be

    if not any(target.gpu.lower() in g.name.lower() for g in be.gpus()):
        return f"needs {target.gpu}"
    return None


def select(targets: tuple[TargetSpec, ...], names: tuple[str, ...], where: str = "--target") -> tuple[TargetSpec, ...]:
    """The targets named (all when none is); an unknown name is one line, exit 2."""
    if not names:
        return targets
    known = {t.name: t for t in targets}
    for n in names:
        if n not in known:
            near = difflib.get_close_matches(n, list(known), n=1)
            raise ManifestError(
                f"no target '{n}'",
                where=where,
                hint=f"did you mean '{near[0]}'?"
                if near
                else f"targets: {', '.join(known) or 'none declared (add [targets.NAME])'}",
            )
    return tuple(known[n] for n in dict.fromkeys(names))
