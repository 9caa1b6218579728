"""Meaning checks: ONNX Runtime runs the graph before and after a pass (or a run of passes) on the
recorded example inputs and compares.

- a restructuring pass (`exact`) must give bit-identical outputs;
- a folding pass may change the order of arithmetic: |after - before| <= atol + rtol * |before|
  with FOLD_TOLERANCE, atol scaled by the output's largest magnitude;
- a pass that changes the graph's inputs or outputs is not checked here: the verify stage compares
  it with the equivalent torch op applied to the FP32 reference (export/caller_view.py).

The graphs run from a scratch folder holding hard links to the weight files, so the check reads
weights from disk through ONNX Runtime and never serialises them into a protobuf. Graph
optimisations are off so both sides run the same kernels on the same nodes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort

from trtforge.errors import PassError
from trtforge.graph_passes.legalize_dtypes import promote
from trtforge.onnx_files import save_model
from trtforge.tensors import NP_DTYPES

FOLD_TOLERANCE = {"rtol": 1e-3, "atol": 1e-3}
_NP = {**NP_DTYPES, "float64": np.float64, "int16": np.int16, "uint16": np.uint16}


def snapshot(graph: gs.Graph, like: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """The graph as ONNX; external weights stay references into their files (nothing is loaded)."""
    model = gs.export_onnx(graph, do_type_check=False)
    if like is not None:
        model.ir_version = like.ir_version
        have = {o.domain for o in model.opset_import}
        model.opset_import.extend([o for o in like.opset_import if o.domain not in have])
    return model


def feeds_for(model: onnx.ModelProto, recorded: list[dict], seed: int = 0) -> dict:
    """Each graph input from the first recorded set that has it with this shape and dtype (the
    example inputs, then the caller's); otherwise seeded random values of its declared type."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        tt = vi.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        for arrays in recorded:
            a = arrays.get(vi.name)
            if a is not None and a.dtype == dtype and list(a.shape) == shape:
                feeds[vi.name] = a
                break
        else:
            if np.issubdtype(dtype, np.floating):
                feeds[vi.name] = rng.uniform(-1, 1, size=shape).astype(dtype)
            elif dtype == np.bool_:
                feeds[vi.name] = rng.integers(0, 2, size=shape).astype(dtype)
            else:
                feeds[vi.name] = rng.integers(0, 8, size=shape).astype(dtype)
    return feeds


def run_model(model: onnx.ModelProto, weights: Path, feeds: dict) -> dict:
    """Run `model` whose external data lives in `weights`, from a scratch folder of hard links."""
    scratch = Path(tempfile.mkdtemp(prefix="trtforge-check-"))
    try:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        save_model(copy, weights, scratch, new_data="check.data")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(scratch / "model.onnx"), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
        assert "CPUExecutionProvider" in sess.get_providers()
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, {k: v for k, v in feeds.items()
                                                 if k in {i.name for i in sess.get_inputs()}})))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def compare(passes: list, before: dict, after: dict) -> str:
    """A verdict line, or PassError naming the pass(es) whose outputs moved."""
    exact = all(p.exact for p in passes)
    names = " + ".join(p.name for p in passes)
    if set(before) != set(after):
        raise PassError(f"outputs changed from {sorted(before)} to {sorted(after)}", where=f"pass {names}")
    worst = 0.0
    for name, b in before.items():
        a = after[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            raise PassError(f"output '{name}' changed from {b.dtype}{list(b.shape)} to "
                            f"{a.dtype}{list(a.shape)}", where=f"pass {names}")
        if exact:
            same = np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.floating))
            if not same:
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
                raise PassError(f"output '{name}' is not identical after a restructuring pass "
                                f"(max abs diff {np.nanmax(diff):.3g})", where=f"pass {names}",
                                hint="the rewrite changed the graph's meaning; this is a bug in the pass")
            continue
        b64, a64 = b.astype(np.float64), a.astype(np.float64)
        scale = float(np.nanmax(np.abs(b64))) if b64.size else 0.0
        tol = FOLD_TOLERANCE["atol"] * max(scale, 1.0) + FOLD_TOLERANCE["rtol"] * np.abs(b64)
        with np.errstate(invalid="ignore"):  # inf - inf
            diff = np.abs(a64 - b64)
        bad = ~(diff <= tol) & ~(a64 == b64) & ~(np.isnan(a64) & np.isnan(b64))  # equal infinities agree
        if bad.any():
            raise PassError(f"output '{name}' moved beyond the folding tolerance (max abs diff "
                            f"{np.nanmax(diff):.3g}, rtol {FOLD_TOLERANCE['rtol']}, atol "
                            f"{FOLD_TOLERANCE['atol']} x max|out|)", where=f"pass {names}",
                            hint="the rewrite changed the graph's meaning; this is a bug in the pass")
        worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
    return "identical" if exact else f"within tolerance (max abs diff {worst:.3g})"


class OrtChecker:
    """`Pipeline.checker`: runs the snapshot taken before and the graph after on the same feeds."""

    def __init__(self, weights: Path, recorded: list[dict], like: onnx.ModelProto | None = None):
        self.weights, self.recorded, self.like = weights, recorded, like

    def snapshot(self, graph: gs.Graph) -> onnx.ModelProto:
        return snapshot(graph, self.like)

    def __call__(self, passes: list, before: onnx.ModelProto, graph: gs.Graph) -> str:
        after = self.snapshot(graph)
        feeds = feeds_for(before, self.recorded)
        names = " + ".join(p.name for p in passes)
        try:
            out_before, promoted = self._run(before, feeds, promotable=True)
        except Exception as e:  # the graph before ran in the export check; say so if it cannot here
            return f"not checked: ONNX Runtime cannot run the graph before {names}: {str(e).splitlines()[0][:200]}"
        try:  # a graph still mixed after the passes is theirs to explain only if it was not before
            out_after, both = self._run(after, feeds, promotable=promoted)
        except Exception as e:
            raise PassError(f"ONNX Runtime cannot run the graph after the pass: "
                            f"{type(e).__name__}: {str(e).splitlines()[0][:200]}", where=f"pass {names}") from e
        prefix = ("both with type promotion: " if both else
                  "vs the graph before with type promotion: " if promoted else "")
        return prefix + compare(passes, out_before, out_after)

    def _run(self, model: onnx.ModelProto, feeds: dict, promotable: bool) -> tuple[dict, bool]:
        """(outputs, whether type promotion was needed). ONNX Runtime refuses a graph that mixes
        dtypes in one op (an FP16 export with FP32 islands): it means what torch's type promotion
        says, written as Casts by legalize_dtypes.promote."""
        try:
            return run_model(model, self.weights, feeds), False
        except Exception:
            promoted = promote(model) if promotable else None
            if promoted is None:
                raise
            return run_model(promoted, self.weights, feeds), True
