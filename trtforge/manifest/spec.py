"""One module of the manifest, every default resolved: `InputSpec` and `ModuleSpec`.

Each field is declared once (`fields.setting`); `as_key()` is the key material its declarations
make, so two manifests that mean the same thing resolve to equal specs and hash the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtforge.data import sources as input_sources
from trtforge.data.dims import profiles_key
from trtforge.manifest import checks as c
from trtforge.manifest.fields import key_material, setting, spec_table
from trtforge.manifest.settings import (
    TOLERANCE,
    BuildSettings,
    ExportSettings,
    PrecisionSettings,
    VerifySettings,
)

DEFAULT_SOURCE = {"dist": "uniform"}


def _source_key(spec: InputSpec) -> dict:
    if input_sources.is_outside(spec.source.get("file", "")):
        # data outside the project: keyed by content (example_data), not by this machine's folder
        return {**spec.source, "file": "<outside>/" + Path(spec.source["file"]).name}
    return spec.source


@dataclass(frozen=True)
class InputSpec:
    name: str = setting()
    # a str is a named dynamic dimension (ModuleSpec.profiles)
    shape: tuple[int | str, ...] = setting(
        c.shape, doc="Sizes; a name (e.g. batch) is a dynamic dimension, its range dims.NAME."
    )
    dtype: str = setting(c.dtype, "float16", doc="The input's dtype.")
    range: tuple[float, float] = setting(c.value_range, (-1.0, 1.0), doc="[low, high] of the example values.")
    # resolved to `name` when not written
    arg: str = setting(c.string, "", doc="The forward() parameter it binds to (default: the input's name).")
    # where the example values come from (trtforge/data/sources.py): uniform in `range` by
    # default; the default source is left out of the key (a manifest written before sources
    # existed keeps its keys)
    source: dict = setting(factory=lambda: dict(DEFAULT_SOURCE), key=_source_key, when_set=True)

    def as_key(self) -> dict:
        return key_material(self)


# shape, dtype, range, arg: the keys of inputs.NAME besides its source's
INPUT = spec_table(InputSpec)


def _outputs_key(spec: ModuleSpec) -> list | dict:
    return dict(spec.output_renames) if spec.output_renames else list(spec.outputs)


@dataclass(frozen=True)
class ModuleSpec:
    """Everything about one module, every default resolved. `as_key()` is its cache key material."""

    name: str = setting()
    factory: str = setting()
    factory_args: dict = setting()
    inputs: tuple[InputSpec, ...] = setting(key=lambda m: [i.as_key() for i in m.inputs])
    # with output_renames, the table { returned name = engine name } is keyed instead
    outputs: tuple[str, ...] = setting(key=_outputs_key)
    depends: tuple[str, ...] = setting(key=lambda m: list(m.depends))
    # expected_fp32_islands only when written: the keys of manifests without it stay
    export: ExportSettings = setting(key=lambda m: key_material(m.export))
    passes: tuple[dict, ...] = setting(key=lambda m: list(m.passes))
    precision_rules: tuple[dict, ...] = setting(key=lambda m: list(m.precision_rules))
    precision: PrecisionSettings = setting(key=lambda m: key_material(m.precision))
    build: BuildSettings = setting(key=lambda m: key_material(m.build))
    verify: VerifySettings = setting(key=lambda m: key_material(m.verify))
    verify_outputs: dict = setting(factory=dict)
    pass_check: str = setting(default="each")
    # factory_args keys whose values are paths relative to the manifest's folder (see factory_kwargs)
    factory_paths: tuple[str, ...] = setting(default=(), key=lambda m: list(m.factory_paths))
    # optimization profiles of the named dims (trtforge/data/dims.py); () = static. Static modules keep
    # the key they always had: "profiles" appears only when there are some; so do "checkpoint"
    # and "method" (export keys them: the checkpoint by content)
    profiles: tuple = setting(default=(), key=lambda m: profiles_key(m.profiles), when_set=True)
    # a checkpoint file or folder (relative to the manifest, or absolute) the factory receives as
    # its first argument; its content, not its path, keys the export (export.checkpoint_digests)
    checkpoint: str = setting(default="", when_set=True)
    method: str = setting(default="forward", when_set=True)  # the method exported (e.g. AutoencoderKL's "decode")
    # (returned name, engine name) pairs of `outputs = { sample = "image" }`; () = no renaming;
    # keyed as `outputs`
    output_renames: tuple[tuple[str, str], ...] = setting(default=(), keyed=False)

    def as_key(self) -> dict:
        return key_material(self)

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
