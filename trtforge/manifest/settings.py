"""Every stage's settings, each field declared once (`fields.setting`): the loader's tables
(EXPORT, BUILD, ...), the frozen dataclasses the stages read and their key material all come
from the declarations below. A new field changes cache keys: say so in the commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from trtforge.manifest import checks as c
from trtforge.manifest import limits
from trtforge.manifest.checks import Spec
from trtforge.manifest.fields import setting, spec_table

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


@dataclass(frozen=True)
class ExportSettings:
    """[export]: how the module becomes ONNX (key material of the export stage)."""

    exporter: str = setting(c.one_of(c.EXPORTERS), "dynamo", doc="torch.export (dynamo) or the TorchScript exporter.")
    opset: int = setting(  # the installed exporter's range is checked with the exporter
        c.positive_int, 20, doc="The ONNX opset written; one the installed torch exporter writes."
    )
    forbid_fp32_islands: bool = setting(
        c.boolean, False, doc="FP32 islands in the export (expected ones aside) are an error, not a warning."
    )
    # keyed only when written, so the keys of manifests without it stay
    expected_fp32_islands: tuple[str, ...] = setting(
        c.str_list,
        (),
        when_set=True,
        doc="Module classes or packages (e.g. diffusers) whose FP32 islands are meant: not warned about, "
        "not refused, still reported.",
    )

    def expects(self, island: dict) -> bool:
        """An island the manifest says is meant: its module class is, or lies in, a listed name."""
        cls = island.get("in", "")
        return any(cls == p or cls.startswith(p + ".") for p in self.expected_fp32_islands)


@dataclass(frozen=True)
class BuildSettings:
    """[build]: how the engine is built (key material of the build stage)."""

    backend: str = setting(c.one_of(c.BACKENDS), "auto", doc="The backend that builds the engine.")
    optimization_level: int = setting(c.int_in(*limits.OPTIMIZATION_LEVELS), 3, doc="The builder's optimization level.")
    workspace_mib: int = setting(c.int_in(1, limits.MAX_WORKSPACE_MIB), 4096, doc="The builder's workspace, in MiB.")
    rtx_compute_capabilities: tuple[str, ...] = setting(
        c.cc_list,
        (),
        doc="TensorRT-RTX: the compute capabilities the engine runs on (none: the backend's default set).",
    )


@dataclass(frozen=True)
class PrecisionSettings:
    """[precision] besides its rules: how FP32 islands are realised."""

    realizer: str = setting(
        c.one_of(("casts", "layer_precision", "auto")),
        "auto",
        doc="Cast nodes in the ONNX (casts; auto), or a layer-precision plan for a weakly typed TensorRT 10.",
    )


@dataclass(frozen=True)
class ToleranceSettings:
    """The tolerance a check holds an output to ([verify], and per output)."""

    atol: float = setting(c.nonneg, 1e-2, doc="Absolute tolerance.")
    rtol: float = setting(c.nonneg, 1e-2, doc="Relative tolerance.")
    max_outside: float = setting(c.fraction, 1e-3, doc="The share of elements allowed outside atol and rtol.")
    min_cosine: float = setting(c.fraction, 0.999, doc="The least cosine similarity to the FP32 reference.")


@dataclass(frozen=True)
class VerifySettings(ToleranceSettings):
    """[verify]: the tolerance every check holds an output to, and the extra input sets."""

    random_inputs: int = setting(
        c.int_in(0, limits.MAX_RANDOM_INPUTS), 0, doc="Seeded random input sets checked besides the example set."
    )
    seed: int = setting(c.integer, 0, doc="The seed of the example inputs and the random sets.")
    input_sets: tuple[str, ...] = setting(
        c.npz_patterns,
        (),
        doc="Globs of named example sets (.npz, every input by name, relative to the manifest), each "
        "verified like the example set.",
    )
    shapes: int = setting(
        c.int_in(0, limits.MAX_RANDOM_INPUTS),
        2,
        doc="Dynamic dims: seeded random shapes checked inside each profile, besides its min, opt and max.",
    )


EXPORT = spec_table(ExportSettings)
BUILD = spec_table(BuildSettings)
PRECISION = spec_table(PrecisionSettings)
TOLERANCE = spec_table(ToleranceSettings)
VERIFY = spec_table(VerifySettings)

# task metrics per output (verify.outputs.<name>.metric): the keys each metric takes, defaults filled
TASK: dict[str, Spec] = {
    "psnr": {"min_psnr": (c.number, 40.0), "peak": (c.nonneg, 0.0)},  # peak 0: the reference's range
    "iou": {
        "mask": (c.one_of(("threshold", "argmax")), "threshold"),
        "threshold": (c.number, 0.5),
        "axis": (c.integer, 1),
        "min_iou": (c.fraction, 0.9),
    },
    "topk": {"k": (c.positive_int, 5), "axis": (c.integer, -1), "min_topk": (c.fraction, 0.8)},
}
# how an output is compared besides its tolerance (verify/valid.py), written only when set:
# valid = an integer or bool input, 1 at real positions: the output's elements where it is 0 are
# left out; constant_ok: the output may be constant, or have identical rows, in the FP32 reference
OUTPUT_USE: Spec = {"valid": (c.nonempty_str, ""), "constant_ok": (c.boolean, False)}
# [defaults] keys besides the stage sections
TOP: Spec = {
    "cache_dir": (c.nonempty_str, ".trtforge-cache"),
    "output_dir": (c.nonempty_str, "engines"),
    # an output folder outside the manifest's folder is refused unless this says it is meant
    "output_dir_outside": (c.boolean, False),
    # files in the output folder that trtforge did not write are refused unless this is set
    "allow_foreign_files": (c.boolean, False),
}
# [cache]: the shared remote cache (docs/farm.md); credentials never go here (environment only)
CACHE: Spec = {"remote": (c.remote_url, ""), "read_only": (c.boolean, False), "options": (c.table, {})}
