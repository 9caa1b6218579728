"""The verification chain for one module."""

from __future__ import annotations

import json
import time
from pathlib import Path

import onnxruntime as ort

from trtforge.tensors import load_arrays
from trtforge.verify.engine_check import run_engine, why_not_runnable
from trtforge.verify.metrics import compare_all
from trtforge.verify.onnx_check import run_fp16_faithful, run_ort
from trtforge.stage import StageContext

PLAIN = "onnxruntime CPU: not FP16-faithful (computes FP16 MatMul/Softmax in FP32)"
FAITHFUL = "onnxruntime CPU node by node, every tensor stored in its dtype: FP16-faithful"
CUDA = "onnxruntime CUDA: FP16-faithful"
CHAIN = ("export", "graph_passes", "precision_rules", "engine")


def _check(kind: str, run, ref: dict, tol) -> dict:
    t0 = time.perf_counter()
    try:
        outputs = run()
    except Exception as e:  # an ONNX that cannot run is a failed check, attributed to its stage
        return {"status": "failed", "kind": kind, "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    metrics = compare_all(outputs, ref, tol)
    bad = [f"{n}: {m['reason']}" for n, m in metrics.items() if not m["ok"]]
    return {"status": "failed" if bad else "ok", "kind": kind, "outputs": metrics,
            "seconds": round(time.perf_counter() - t0, 3), **({"reason": "; ".join(bad)} if bad else {})}


def verify_module(ctx: StageContext, workdir: Path) -> dict:
    exp = ctx.inputs["export"]
    model_in, model_ref = load_arrays(exp / "inputs.npz"), load_arrays(exp / "reference.npz")
    caller_in, caller_ref = load_arrays(exp / "caller_inputs.npz"), load_arrays(exp / "caller_reference.npz")
    tol = ctx.module.tolerance
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    checks = {
        "export": _check(PLAIN, lambda: run_ort(exp, model_in), model_ref, tol),
        "graph_passes": _check(PLAIN, lambda: run_ort(ctx.inputs["graph_passes"], caller_in), caller_ref, tol),
    }
    prec = ctx.inputs["precision_rules"]
    if cuda:
        checks["precision_rules"] = _check(CUDA, lambda: run_ort(prec, caller_in, "CUDAExecutionProvider"),
                                           caller_ref, tol)
    else:
        checks["precision_rules"] = _check(FAITHFUL, lambda: run_fp16_faithful(prec, caller_in), caller_ref, tol)
    build_meta = json.loads((ctx.inputs["build"] / "build.json").read_text())
    reason = why_not_runnable(build_meta)
    if reason:
        checks["engine"] = {"status": "not run", "kind": "TensorRT runtime", "reason": f"engine not run here: {reason}"}
    else:
        latency = {}

        def engine_outputs():
            out, lat = run_engine(ctx.inputs["build"] / "model.engine", caller_in, build_meta["backend"])
            latency.update(lat)
            return out

        checks["engine"] = _check("TensorRT runtime, one CUDA stream", engine_outputs, caller_ref, tol)
        checks["engine"]["latency"] = latency
    failed = [s for s in CHAIN if checks[s]["status"] == "failed"]
    # the pure-FP16 export and pass graphs may overflow on an FP16-faithful kernel (ORT's CPU
    # Attention-23 is one) before the precision rules add their islands: what ships is judged by
    # the precision_rules and engine checks; the earlier ones say where a failure started.
    final = [s for s in failed if s in ("precision_rules", "engine")]
    meta = {"checks": checks, "passed": not final, "blame": failed[0] if final else None,
            "engine_checked": checks["engine"]["status"] == "ok"}
    (workdir / "verify.json").write_text(json.dumps(meta, indent=1))
    return meta
