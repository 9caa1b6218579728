"""`trtforge inspect`: what an engine or a cached stage is, in one screen (or JSON): I/O with
dtypes and shapes, layers by dtype and type, FP32 layers with the rule that put each there, file
sizes, versions and the verification summary.

An engine file is described by the sidecar published beside it (engines/<target>/<module>.json);
its layers and rules come from the cache records that built it, where the cache still holds them.
A `module[:stage]` is described by the module's last record of that stage in the cache.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trtforge.artifacts import BuildFiles, ExportFiles, GraphPassesFiles, PrecisionFiles
from trtforge.cache import Record, Store
from trtforge.cache.keys import digest_bytes
from trtforge.driver.stages import STAGE_NAMES
from trtforge.errors import TrtforgeError
from trtforge.manifest import Manifest

# the stages whose artifact is an ONNX model, and its file name
ONNX_STAGES = {
    "export": ExportFiles.MODEL,
    "graph_passes": GraphPassesFiles.MODEL,
    "precision_rules": PrecisionFiles.MODEL,
}
_ONNX_DTYPES = {
    1: "FLOAT",
    10: "HALF",
    7: "INT64",
    6: "INT32",
    9: "BOOL",
    3: "INT8",
    2: "UINT8",
    11: "DOUBLE",
    16: "BF16",
}


@dataclass
class Inspection:
    """What `inspect` found; `as_json()` is `--json`'s document. Empty fields were not available
    (e.g. layers of an engine whose cache entry was collected)."""

    subject: str
    module: str
    stage: str
    io: dict = field(default_factory=dict)  # {"inputs": [{name, shape, dtype}], "outputs": [...]}
    layers: dict = field(default_factory=dict)  # {"total", "by_dtype", "by_type"}
    fp32_layers: list[dict] = field(default_factory=list)  # {"layer", "rule", "reason"}
    sizes: dict[str, int] = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    verification: dict[str, dict] = field(default_factory=dict)  # check -> {"status", "reason"}
    notes: list[str] = field(default_factory=list)
    # the engine's optimization profiles, in order: [{input: {"min", "opt", "max"}}] ([]: static)
    profiles: list[dict] = field(default_factory=list)
    # MODULE without --target, several published: which target this is and how to pick another
    # (printed under the versions, which name the same target)
    target_note: str = ""

    def as_json(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------ reading records
def _read(store: Store, record: Record, name: str) -> bytes:
    """One output of a record, its digest checked (nothing is linked or written)."""
    digest = record.outputs[name]["digest"]
    data = store.blob_path(digest).read_bytes()
    if digest_bytes(data) != digest:
        raise TrtforgeError(
            f"cache blob for {record.stage} {name} is corrupt",
            where=str(store.root),
            hint="`trtforge cache verify` removes it; the next build rebuilds it",
        )
    return data


def last_record(store: Store, module: str, stage: str) -> Record | None:
    last = store.last(module, stage)
    return store.lookup(last["key"]) if last else None


def _upstream(store: Store, module: str, record: Record, stage: str) -> Record | None:
    """The module's last `stage` record, if it is the one `record` was built from (its key
    document names the digests of its inputs)."""
    want = (store.key_doc(record.key) or {}).get("inputs", {}).get(stage)
    candidate = last_record(store, module, stage)
    return candidate if candidate is not None and candidate.digests() == want else None


# ----------------------------------------------------------------------------------- describing
def layer_counts(layers: list[dict]) -> dict:
    dtypes = Counter(layer["outputs"][0] if layer.get("outputs") else "none" for layer in layers)
    types = Counter(layer["type"] for layer in layers)
    return {"total": len(layers), "by_dtype": dict(dtypes.most_common()), "by_type": dict(types.most_common())}


def fp32_with_rules(names: list[str], plan: dict | None) -> list[dict]:
    """Each FP32 layer with the precision rule that planned it; a layer no rule planned (TensorRT
    kept it FP32, or the plan is no longer cached) says so."""
    out = []
    for name in names:
        entry = (plan or {}).get(name)
        if entry is not None:
            out.append({"layer": name, "rule": entry["rule"], "reason": entry.get("reason", "")})
        else:
            out.append(
                {
                    "layer": name,
                    "rule": None,
                    "reason": "not in the precision plan" if plan is not None else "precision plan not in the cache",
                }
            )
    return out


def _verification(checks: dict) -> dict[str, dict]:
    return {s: {"status": c["status"], "reason": c.get("reason", "")} for s, c in checks.items()}


def _describe_build(store: Store, record: Record, info: Inspection) -> None:
    """I/O, layers and FP32 layers (with their rules) of a build record."""
    meta = record.meta
    info.io = meta.get("io", {})
    info.profiles = meta.get("profiles") or []
    info.versions.update(
        {
            "backend": meta.get("backend"),
            "backend_version": meta.get("backend_version"),
            "target": meta.get("target", {}).get("name"),
        }
    )
    if BuildFiles.LAYERS in record.outputs:
        info.layers = layer_counts(json.loads(_read(store, record, BuildFiles.LAYERS)))
    precision = _upstream(store, info.module, record, "precision_rules")
    info.fp32_layers = fp32_with_rules(meta.get("fp32_layers", []), precision.meta.get("fp32") if precision else None)


def _describe_onnx(store: Store, record: Record, info: Inspection) -> None:
    import onnx  # here: `inspect` of an engine needs none of it

    model = onnx.load_model_from_string(_read(store, record, ONNX_STAGES[record.stage]))  # external weights not read
    try:
        typed = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - dtypes by node are a nicety; the counts by type still stand
        typed = model
    dtypes = {
        v.name: _ONNX_DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))
        for v in [*typed.graph.value_info, *typed.graph.input, *typed.graph.output]
    }

    def io(values) -> list[dict]:
        return [
            {
                "name": v.name,
                "dtype": dtypes.get(v.name),
                "shape": [
                    d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim
                ],
            }
            for v in values
        ]

    info.io = {"inputs": io(model.graph.input), "outputs": io(model.graph.output)}
    info.layers = layer_counts(
        [
            {"type": n.op_type, "outputs": [dtypes.get(n.output[0], "unknown")] if n.output else []}
            for n in model.graph.node
        ]
    )
    info.versions.update(
        {
            "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
        }
    )
    if record.stage == "precision_rules":
        plan = record.meta.get("fp32", {})
        info.fp32_layers = fp32_with_rules(sorted(plan), plan)


def _describe_verify(store: Store, module: str, built_from: Record, info: Inspection) -> None:
    """The verification summary of the module's last verify record, if it checked `built_from`."""
    verify = last_record(store, module, "verify")
    doc = store.key_doc(verify.key) if verify else None
    if verify is None or doc is None or doc.get("inputs", {}).get(built_from.stage) != built_from.digests():
        info.notes.append("no verification of this artifact in the cache")
        return
    info.verification = _verification(verify.meta.get("checks", {}))


def describe_record(store: Store, module: str, record: Record, subject: str) -> Inspection:
    info = Inspection(subject=subject, module=module, stage=record.stage)
    info.sizes = {n: o["size"] for n, o in sorted(record.outputs.items())}
    doc = store.key_doc(record.key) or {}
    info.versions = {"tools": doc.get("material", {}).get("tools", {}), "key": record.key[:16]}
    if record.stage == "build":
        _describe_build(store, record, info)
    elif record.stage in ONNX_STAGES:
        _describe_onnx(store, record, info)
    if record.stage == "verify":
        info.verification = _verification(record.meta.get("checks", {}))
    else:
        _describe_verify(store, module, record, info)
    return info


# ---------------------------------------------------------------------------------- entry points
def parse_target(text: str) -> tuple[str, str]:
    """'vit' -> ('vit', 'build'); 'vit:export' -> ('vit', 'export')."""
    module, _, stage = text.partition(":")
    stage = stage or "build"
    if stage not in STAGE_NAMES:
        raise TrtforgeError(f"no stage '{stage}'", where=text, hint=f"stages: {', '.join(STAGE_NAMES)}")
    return module, stage


def inspect_stage(store: Store, manifest: Manifest, text: str, target: str | None = None) -> Inspection:
    """MODULE[:STAGE] from the cache; with `target`, a build or verify is described from that
    target's published engine (the cache's last record of a stage is the last target built)."""
    name, stage = parse_target(text)
    module = manifest.module(name)  # a misspelt module: "did you mean"
    published = published_targets(manifest.output_dir, module.name)
    if target is not None and stage in ("build", "verify"):
        engine = manifest.output_dir / target / f"{module.name}.engine"
        if target not in published:
            raise TrtforgeError(
                f"no engine of module '{module.name}' published for target '{target}'",
                where=f"--target {target}",
                hint=f"targets published in {manifest.output_dir}: {', '.join(published) or 'none (build first)'}",
            )
        return inspect_engine(engine, store)
    record = cached_record(store, module.name, stage)
    info = describe_record(store, module.name, record, f"{module.name}:{stage}")
    if target is not None:
        info.notes.append(f"stage {stage} comes before the build: every target shares it")
    elif stage in ("build", "verify") and len(published) > 1:
        here = _published_as(manifest.output_dir, module.name, record.key, published)
        if here:  # the [targets] name, as an engine file's own inspection says it
            info.versions["target"] = here
        others = ", ".join(t for t in published if t != here)
        info.target_note = (
            f"target {here or info.versions.get('target') or '?'} (the last built); "
            f"{'also ' if here else ''}published: {others}; pick one with --target"
        )
    return info


def _published_as(out_dir: Path, module: str, build_key: str, published: list[str]) -> str | None:
    """The target folder whose engine this build record made (its sidecar names the key)."""
    for t in published:
        try:
            if json.loads((out_dir / t / f"{module}.json").read_bytes()).get("cache_key") == build_key:
                return t
        except (OSError, ValueError, AttributeError):
            continue
    return None


def published_targets(out_dir: Path, module: str) -> list[str]:
    """The target folders under `out_dir` that hold a published engine of `module`."""
    try:
        return sorted(d.name for d in out_dir.iterdir() if (d / f"{module}.engine").is_file())
    except OSError:
        return []


def cached_record(store: Store, module: str, stage: str) -> Record:
    """The module's last record of `stage`; a one-line error when the cache holds none."""
    record = last_record(store, module, stage)
    if record is None:
        raise TrtforgeError(
            f"module '{module}' has no {stage} record in the cache",
            where=str(store.root),
            hint="run `trtforge build` first (or pass the --cache-dir it used)",
        )
    return record


def inspect_engine(path: Path, store: Store | None) -> Inspection:
    side_path = path.with_suffix(".json")
    try:
        side = json.loads(side_path.read_bytes())
    except FileNotFoundError:
        raise TrtforgeError(
            f"no sidecar {side_path.name} beside the engine",
            where=str(path),
            hint="inspect reads the sidecar `trtforge build` publishes with each engine; "
            "or inspect MODULE[:build] from the cache",
        ) from None
    except (OSError, ValueError) as e:
        raise TrtforgeError(
            f"sidecar {side_path} is damaged ({type(e).__name__})",
            where=str(path),
            hint="rebuild, or copy the engines folder again",
        ) from None
    if not isinstance(side, dict) or "module" not in side:
        raise TrtforgeError(f"{side_path} is not a trtforge sidecar", where=str(path), hint="rebuild")
    info = Inspection(subject=str(path), module=side["module"], stage="build", io=side.get("io", {}))
    info.versions = {
        "trtforge": side.get("trtforge"),
        "backend": side.get("backend"),
        "backend_version": side.get("backend_version"),
        "target": side.get("target", {}).get("name"),
    }
    info.sizes = {
        f: (path.parent / f).stat().st_size for f in sorted(side.get("files", {})) if (path.parent / f).is_file()
    }
    info.verification = _verification(side.get("verification", {}))
    info.profiles = side.get("profiles") or []
    record = store.lookup(side["cache_key"]) if store is not None and side.get("cache_key") else None
    if store is None or record is None:
        info.fp32_layers = fp32_with_rules(side.get("fp32_layers", []), None)
        info.notes.append(
            "layers and precision rules: the engine's build record is not in the cache"
            + ("" if store is not None else " (no cache found: pass --cache-dir or --manifest)")
        )
        return info
    _describe_build(store, record, info)
    info.io = side.get("io", info.io)
    info.versions["target"] = side.get("target", {}).get("name")  # the folder's: a [targets] name
    info.profiles = side.get("profiles") or info.profiles
    return info


# ------------------------------------------------------------------------------------- rendering
def _tensor(t: dict) -> str:
    return f"{t['name']} {t.get('dtype')} {list(t.get('shape', []))}"


def _counts(c: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.items())


def render(info: Inspection) -> list[str]:
    lines = [f"{info.subject}: module {info.module}, stage {info.stage}"]
    versions = {k: v for k, v in info.versions.items() if v and k != "tools"}
    tools = {k: v for k, v in info.versions.get("tools", {}).items() if v}
    lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in {**versions, **tools}.items()))
    if info.target_note:
        lines.append(f"  note: {info.target_note}")
    for side in ("inputs", "outputs"):
        lines.append(f"  {side}: " + ("; ".join(_tensor(t) for t in info.io.get(side, [])) or "-"))
    if info.stage in ("build", "verify"):
        lines += render_profiles(info.profiles)
    if info.layers:
        lines.append(f"  layers: {info.layers['total']}")
        lines.append(f"    by dtype: {_counts(info.layers['by_dtype'])}")
        lines.append(f"    by type: {_counts(info.layers['by_type'])}")
    lines.append(f"  FP32 layers: {len(info.fp32_layers)}")
    for f in info.fp32_layers:
        rule = f"rule {f['rule']}" if f["rule"] else "no rule"
        lines.append(f"    {f['layer']}: {rule}" + (f" ({f['reason']})" if f["reason"] else ""))
    lines.append("  sizes: " + ", ".join(f"{n} {s / 1e6:.2f} MB" for n, s in info.sizes.items()))
    if info.verification:
        lines.append(
            "  verification: "
            + "; ".join(
                f"{s} {c['status']}" + (f" ({c['reason']})" if c["reason"] else "")
                for s, c in info.verification.items()
            )
        )
    lines += [f"  note: {n}" for n in info.notes]
    return lines


def render_profiles(profiles: list[dict]) -> list[str]:
    """The optimization profiles as trtexec and polygraphy print them: per profile, each dynamic
    input's min / opt / max shape."""
    if not profiles:
        return ["  profiles: none (static shapes)"]
    lines = [f"  profiles: {len(profiles)}"]
    for i, shapes in enumerate(profiles):
        for name, pts in shapes.items():
            lines.append(
                f"    profile {i}: {name} min={list(pts['min'])} opt={list(pts['opt'])} max={list(pts['max'])}"
            )
    return lines
