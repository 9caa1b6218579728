"""What a runner holds: `m.unet(sample=..., timestep=...)` calls a module by its manifest input
names and returns its outputs by name, as the FP32 PyTorch module (the reference) or as published
(the final graph on the FP16-faithful evaluator). Every call is recorded.

The runner sees torch tensors both ways: inputs arrive as the manifest's dtype (FP32 for the
reference), outputs leave as FP32 (integers stay integers), so the runner's own arithmetic (a
scheduler's step, guidance, argmax) is the same code on the same dtype in every run and only the
modules differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trtforge.data.dims import union_ranges
from trtforge.data.tensors import NP_DTYPES
from trtforge.errors import PipelineError
from trtforge.manifest import ModuleSpec
from trtforge.verify.valid import keep_mask

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Signature:
    """What a handle checks a call against: the module's name, inputs (name, shape, dtype) and
    profiles. From the manifest at build time; from the pipeline's sidecar on the target."""

    name: str
    inputs: tuple  # (name, shape, dtype) per input
    profiles: tuple = ()
    valid: tuple = ()  # (output, input) per verify.outputs.OUTPUT.valid: the series compares what the module's check does

    @classmethod
    def of(cls, spec: ModuleSpec) -> Signature:
        valid = tuple((o, c["valid"]) for o, c in sorted(spec.verify_outputs.items()) if c.get("valid"))
        return cls(spec.name, tuple((i.name, tuple(i.shape), i.dtype) for i in spec.inputs), spec.profiles, valid)

    def as_json(self) -> dict:
        doc = {"name": self.name, "inputs": [list(i) for i in self.inputs], "profiles": self.profiles}
        return {**doc, "valid": [list(v) for v in self.valid]} if self.valid else doc

    @classmethod
    def from_json(cls, doc: dict) -> Signature:
        inputs = tuple((n, tuple(s), d) for n, s, d in doc["inputs"])
        return cls(doc["name"], inputs, tuple(doc.get("profiles", ())), tuple(map(tuple, doc.get("valid", ()))))

    def keeps(self, outputs: Feeds, feeds: Feeds) -> dict[str, np.ndarray]:
        """The elements of each output the module's own check compares (its `valid` input)."""
        return {o: keep_mask(o, outputs[o].shape, feeds, i, self.name) for o, i in self.valid if o in outputs}


class Outputs(dict):
    """A module's outputs by name; also as attributes (`out.noise_pred`)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no output '{name}'; outputs: {', '.join(self)}") from None


class TorchModule:
    """The module as its factory builds it, in FP32: the reference."""

    label = "fp32"

    def __init__(self, spec: ModuleSpec, root: Path):
        from trtforge.export.binding import bind_inputs
        from trtforge.export.torch_export import build_module

        self.spec = spec
        self.model = build_module(spec, root).float().eval()
        self.binding = bind_inputs(self.model, spec)

    def __call__(self, feeds: Feeds) -> Feeds:
        from trtforge.export.binding import name_outputs

        tensors = {k: torch.from_numpy(v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in feeds.items()}
        args, kwargs = self.binding.call(tensors)
        with torch.no_grad():
            names, outs = name_outputs(self.model(*args, **kwargs), self.spec)
        return {n: t.detach().cpu().numpy() for n, t in zip(names, outs)}


class OnnxModule:
    """The module as published, on the FP16-faithful evaluator: every tensor kept in its dtype."""

    label = "fp16 graph"

    def __init__(self, spec: ModuleSpec, folder: Path):
        from trtforge.graphs.evaluate import Evaluator
        from trtforge.graphs.files import load_graph_proto

        self.spec = spec
        self.evaluator = Evaluator(load_graph_proto(folder), folder, "fp16")
        self.inputs = [i.name for i in self.evaluator.graph.input if i.name not in self.evaluator.initializers]

    def __call__(self, feeds: Feeds) -> Feeds:
        return self.evaluator.run({k: feeds[k] for k in self.inputs})


class Recorder:
    """Every module call of one run: outputs (FP32 copies) per module, in call order. With a
    `reference` recorder, call k of module M is compared against the reference's call k as it
    happens (nothing of this run is kept but the series)."""

    def __init__(self, reference: Recorder | None = None):
        self.calls: dict[str, list[Feeds]] = {}
        self.reference = reference
        self.series: dict[str, list[dict]] = {}

    def record(self, module: str, outputs: Feeds, keeps: dict | None = None) -> None:
        k = len(self.series.get(module, [])) if self.reference else len(self.calls.get(module, []))
        if self.reference is None:
            self.calls.setdefault(module, []).append({n: np.array(v) for n, v in outputs.items()})
            return
        ref_calls = self.reference.calls.get(module, [])
        entry: dict = {"call": k}
        if k < len(ref_calls):
            keeps = keeps or {}
            entry["outputs"] = {
                n: call_error(outputs[n], ref_calls[k][n], keeps.get(n)) for n in ref_calls[k] if n in outputs
            }
        else:
            entry["note"] = "the reference run made fewer calls"
        self.series.setdefault(module, []).append(entry)

    def count(self, module: str) -> int:
        return len(self.series.get(module, [])) if self.reference else len(self.calls.get(module, []))


def call_error(actual: np.ndarray, ref: np.ndarray, keep: np.ndarray | None = None) -> dict:
    """One call's error against the reference's same call: max abs, the L2 error relative to the
    reference's norm, and the error relative to the reference's largest magnitude; with `keep`
    (the module's verify.outputs.X.valid), at the positions it keeps only."""
    a, r = np.asarray(actual, np.float64), np.asarray(ref, np.float64)
    if a.shape != r.shape:
        return {"shape": list(a.shape), "ref_shape": list(r.shape)}
    if keep is not None:
        a, r = a[keep], r[keep]
    if not np.isfinite(a).all():
        return {"nonfinite": int((~np.isfinite(a)).sum())}
    diff = np.abs(a - r)
    norm = float(np.linalg.norm(r))
    scale = float(np.abs(r).max(initial=0.0))
    max_abs = float(diff.max(initial=0.0))
    return {
        "max_abs": max_abs,
        "rel_l2": float(np.linalg.norm(a - r)) / norm if norm > 0 else (0.0 if max_abs == 0 else float("inf")),
        "rel_err": max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")),
    }


class ModuleHandle:
    """`m.NAME(**inputs)`: checks the names and shapes against the manifest, converts to the
    manifest's dtypes, runs the backend, records the outputs and returns them as torch tensors."""

    def __init__(self, pipeline: str, spec: Signature, backend: Callable[[Feeds], Feeds], recorder: Recorder):
        self.pipeline, self.spec, self.backend, self.recorder = pipeline, spec, backend, recorder
        self.ranges = union_ranges(spec.profiles)

    def _error(self, message: str, hint: str) -> PipelineError:
        return PipelineError(f"module '{self.spec.name}': {message}", where=f"pipelines.{self.pipeline}", hint=hint)

    def __call__(self, **kwargs) -> Outputs:
        names = [name for name, _, _ in self.spec.inputs]
        unknown = sorted(set(kwargs) - set(names))
        missing = [n for n in names if n not in kwargs]
        if unknown or missing:
            what = f"unknown input '{unknown[0]}'" if unknown else f"input '{missing[0]}' not given"
            raise self._error(f"{what}; its inputs: {', '.join(names)}", "call modules by their manifest input names")
        feeds: Feeds = {}
        dims: dict[str, int] = {}
        for name, shape, dtype in self.spec.inputs:
            value = kwargs[name]
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            self._check_shape(name, shape, tuple(arr.shape), dims)
            feeds[name] = np.ascontiguousarray(arr.astype(NP_DTYPES[dtype], copy=False))
        out = self.backend(feeds)
        out = {n: (v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v) for n, v in out.items()}
        self.recorder.record(self.spec.name, out, self.spec.keeps(out, feeds) if self.recorder.reference else None)
        return Outputs({n: torch.from_numpy(np.array(v)) for n, v in out.items()})

    def _check_shape(self, name: str, declared: tuple, shape: tuple, dims: dict) -> None:
        bad = len(shape) != len(declared)
        for d, n in zip(declared, shape):
            if isinstance(d, str):
                lo, hi = self.ranges.get(d, (n, n))
                bad |= not lo <= n <= hi or dims.setdefault(d, n) != n
            else:
                bad |= d != n
        if bad:
            want = [f"{d}[{self.ranges[d][0]}..{self.ranges[d][1]}]" if isinstance(d, str) else d for d in declared]
            raise self._error(
                f"input '{name}' called at shape {list(shape)}, outside what its engine takes "
                f"({', '.join(map(str, want))})",
                "call it at the declared shape, or widen the module's dims/profiles",
            )


class Modules:
    """The runner's `m`: one handle per module of the pipeline (`m.unet`, or `m["vae-decoder"]`)."""

    def __init__(self, handles: dict[str, ModuleHandle]):
        self._handles = handles

    def __getattr__(self, name: str) -> ModuleHandle:
        handles = self.__dict__.get("_handles", {})
        if name in handles:
            return handles[name]
        raise AttributeError(f"no module '{name}' in this pipeline; its modules: {', '.join(handles)}")

    def __getitem__(self, name: str) -> ModuleHandle:
        return self.__getattr__(name)

    def __contains__(self, name: str) -> bool:
        return name in self._handles
