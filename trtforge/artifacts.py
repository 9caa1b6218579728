"""Each stage's artifacts, declared once: the files it writes into its cache record and the
metadata (its `run`'s return value, kept in the record) that others read. Producer and consumers
both name them from here, since a stage never imports another.

The metadata types are TypedDicts of the keys read outside the producing stage (more may be
present); `meta(record, BuildMeta)` gives a record's metadata that type, so the type checker holds
every consumer to these names.
"""

from __future__ import annotations

from typing import Any, TypedDict, TypeVar, cast

VERSION = "0.1.0"  # trtforge's own, stamped into index.json, sidecars and reports (trtforge.__version__)

# verify.json's per-output error histograms: the bins' edges (decades of |engine - reference|,
# then NaN/Inf); the report draws them
HIST_EDGES = [0.0] + [10.0**e for e in range(-7, 2)] + [float("inf")]


def npz(stem: str, tag: str = "") -> str:
    """`caller_inputs` -> `caller_inputs.npz`; with a set tag (`.r1`): `caller_inputs.r1.npz`."""
    return f"{stem}{tag}.npz"


# What a stage writes besides its artifacts: its log (clock times, process ids) and the grown
# timing cache. Neither is read by a later stage, so neither is part of a later stage's key nor
# compared between runners (cache/store.py Record.digests, driver/parity.py): two runners that
# ran one key hand later stages the same keys.
NOT_KEYED = frozenset({"export.log", "build.log", "timing.cache"})
# Clock readings in a stage's metadata: kept in the record's metadata (reports), left out of the
# metadata file a stage writes among its artifacts, so the artifact is the same bytes on every run.
CLOCK_FIELDS = frozenset({"seconds", "parse_s", "build_s", "timing_cache"})


def reproducible(meta):
    """`meta` without its clock readings (CLOCK_FIELDS, at any depth): what a stage writes as its
    metadata file, byte-identical on every runner that builds the same key."""
    if isinstance(meta, dict):
        return {k: reproducible(v) for k, v in meta.items() if k not in CLOCK_FIELDS}
    if isinstance(meta, list):
        return [reproducible(v) for v in meta]
    return meta


class ExportFiles:
    MODEL = "model.onnx"  # + model.onnx.data: the FP16 weights, external
    INPUTS = "inputs"  # stems of .npz input sets: the graph's own inputs and the FP32 reference
    REFERENCE = "reference"
    CALLER_INPUTS = "caller_inputs"  # the caller's view (before baked pre-processing) and its reference
    CALLER_REFERENCE = "caller_reference"
    # every input set's tag, label and which inputs were drawn at random (trtforge/data/tensors.py)
    SETS = "input_sets.json"
    META = "export.json"
    LOG = "export.log"


class GraphPassesFiles:
    MODEL = "model.onnx"
    META = "passes.json"
    # what the pass meaning checks evaluated, kept so verify need not evaluate again
    EVALUATED = {"export": "evaluated_export.npz", "graph_passes": "evaluated_passes.npz"}


class PrecisionFiles:
    MODEL = "model.onnx"
    PLAN = "plan.json"


class BuildFiles:
    ENGINE = "model.engine"
    META = "build.json"
    LAYERS = "layers.json"
    LOG = "build.log"


class VerifyFiles:
    META = "verify.json"
    # every input set and its reference in polygraphy's JSON format (verify/polygraphy_bundle.py)
    POLYGRAPHY_INPUTS = "polygraphy-inputs.json"
    POLYGRAPHY_REFERENCE = "polygraphy-reference.json"


class ExportMeta(TypedDict, total=False):
    outputs: list[str]
    fp32_islands: list[dict[str, Any]]
    inputs: dict[str, dict[str, Any]]


class PrecisionMeta(TypedDict, total=False):
    fp32: dict[str, Any]
    flops: dict[str, Any]
    warnings: list[str]
    realizer: str


class BuildMeta(TypedDict, total=False):
    backend: str
    backend_version: str
    target: dict[str, Any]
    io: dict[str, Any]
    fp32_layers: Any
    profiles: list[dict[str, Any]]  # only with dynamic dims: [{input: {min, opt, max}}] (dims.describe)
    timing_cache: dict[str, Any] | None  # digest, bytes, seeded_from (builder/timing.py)


class VerifyMeta(TypedDict, total=False):
    checks: dict[str, dict[str, Any]]
    chain: list[str]
    passed: bool
    blame: str | None
    engine_checked: bool
    input_sets: list[str]
    polygraphy_bundle: list[str]  # the polygraphy JSON files written, a pair per profile
    profiles: list[dict[str, Any]]  # only with dynamic dims, as BuildMeta
    tolerances: dict[str, dict[str, Any]]


M = TypeVar("M")


def meta(record: Any, kind: type[M]) -> M:
    """A cache record's metadata as the producing stage declared it."""
    return cast(M, record.meta)
