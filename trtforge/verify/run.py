"""The verification chain for one module: every stage's artifact against the FP32 reference, on the
example inputs and every seeded random input set; the first failing stage takes the blame."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from trtforge.artifacts import BuildFiles, BuildMeta, ExportFiles, PrecisionMeta, VerifyFiles, meta, reproducible
from trtforge.cache.testhooks import checkpoint
from trtforge.data.tensors import input_sets, load_arrays, same_arrays, set_listing
from trtforge.graphs.evaluate import choose_provider
from trtforge.graphs.files import EVALUATED
from trtforge.stage import StageContext
from trtforge.verify.engine_check import run_engine_sets, why_not_runnable
from trtforge.verify.metrics import compare_all, merge_sets
from trtforge.verify.onnx_check import CUDA_EP, runner
from trtforge.verify.polygraphy_bundle import write_bundle
from trtforge.verify.precision_map import precision_map
from trtforge.verify.valid import check_references

# the export and pass graphs are judged as functions (in FP32): they attribute a failure, while the
# precision stage and the engine decide; node by node, so memory stays at the live activations
PLAIN = "onnxruntime CPU node by node, widened to FP32 (the graph's function, not its FP16 range)"
FAITHFUL = "onnxruntime CPU node by node, every tensor stored in its dtype: FP16-faithful"
CUDA = "onnxruntime CUDA: FP16-faithful"  # FP16 GPU kernels, every tensor stored in its dtype
PLAIN_CUDA = "onnxruntime CUDA, widened to FP32 (FP32 kernels, TF32 off: the graph's function, not its FP16 range)"
ENGINE = "TensorRT runtime, one CUDA stream"


def _check(kind: str, run, sets: list, tol) -> dict:
    """run(feeds) -> outputs, on every (label, inputs, reference) set."""
    t0 = time.perf_counter()
    per_set = []
    for label, feeds, ref in sets:
        try:
            outputs = run(feeds)
        except Exception as e:  # an ONNX that cannot run is a failed check, attributed to its stage
            return {
                "status": "failed",
                "kind": kind,
                "seconds": round(time.perf_counter() - t0, 3),
                "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
            }
        per_set.append((label, compare_all(outputs, ref, tol, feeds)))
    metrics = merge_sets(per_set)
    bad = [f"{n}: {m['reason']}" for n, m in metrics.items() if not m["ok"]]
    return {
        "status": "failed" if bad else "ok",
        "kind": kind,
        "outputs": metrics,
        "input_sets": len(sets),
        "seconds": round(time.perf_counter() - t0, 3),
        **({"reason": "; ".join(bad)} if bad else {}),
    }


def _reuse(passes: Path, stage: str, run, sets: list):
    """`run`, except on the exact feeds the graph_passes meaning check already evaluated this graph
    on with the same evaluator: there, its outputs (a second evaluation would repeat it bit for bit).
    Second: whether that covers every set in `sets` (the check then evaluates nothing)."""
    path = passes / EVALUATED[stage]
    if not path.exists():
        return run, False
    arrays = load_arrays(path)
    ins = {k[3:]: v for k, v in arrays.items() if k.startswith("in:")}
    outs = {k[4:]: v for k, v in arrays.items() if k.startswith("out:")}

    def known(feeds: dict) -> dict:
        if ins and same_arrays(ins, feeds):
            return outs
        return run(feeds)

    return known, bool(ins) and all(same_arrays(ins, feeds) for _, feeds, _ in sets)


def _remembered(run, seen: dict[bytes, dict], keep: bool, reuse: bool):
    """`run` that files its outputs in `seen` by feeds (`keep`), or answers from it (`reuse`)."""

    def remembered(feeds: dict) -> dict:
        key = _digest(feeds)
        if reuse and key in seen:
            return seen[key]
        out = run(feeds)
        if keep:
            seen[key] = out
        return out

    return remembered


def _digest(feeds: dict) -> bytes:
    h = hashlib.sha256()
    for name in sorted(feeds):
        a = np.ascontiguousarray(feeds[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode() + a.tobytes())
    return h.digest()


def _precision_check(prec: Path, sets: list, tol) -> dict:
    """FP16-faithful: on ONNX Runtime's CUDA provider where it really runs (onnx_eval.choose_provider,
    FP16 GPU kernels), else the CPU node-by-node evaluator; a CUDA provider that is installed but
    cannot run is named in the check's kind."""
    provider, why = choose_provider()
    if provider == CUDA_EP:
        return _check(CUDA, runner(prec, "fp16", provider), sets, tol)
    check = _check(FAITHFUL, runner(prec, "fp16", provider), sets, tol)
    if why is not None and CUDA_EP in ort.get_available_providers():
        check["kind"] += f" (CUDA provider not used: {why})"
    return check


def _engine_check(build: Path, build_meta: dict, sets: list, tol) -> dict:
    reason = why_not_runnable(build_meta)
    if reason:
        return {"status": "not run", "kind": ENGINE, "reason": f"engine not run here: {reason}"}
    t0 = time.perf_counter()
    try:  # one deserialisation for every input set
        # dynamic dims: each set runs under the optimization profile that holds its shapes
        by_profile = {"profiles": build_meta["profiles"]} if build_meta.get("profiles") else {}
        outputs, latency = run_engine_sets(
            build / BuildFiles.ENGINE, [s[1] for s in sets], build_meta["backend"], **by_profile
        )
    except Exception as e:  # a runtime that refuses the engine fails the engine check
        return {
            "status": "failed",
            "kind": ENGINE,
            "seconds": round(time.perf_counter() - t0, 3),
            "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
        }
    by_set = {id(s[1]): out for s, out in zip(sets, outputs)}
    check = _check(ENGINE, lambda feeds: by_set[id(feeds)], sets, tol)
    check["latency"] = latency
    return check


def _note_random_inputs(check: dict, drawn: dict[str, dict]) -> None:
    """Beside a failure on a set whose inputs were partly drawn at random, say which: a random
    attention mask (GPT-2's causal mask with random holes) fails a correct export, and nothing
    else in the error hints at the inputs. `drawn`: {set label: {input: source}}."""
    if check["status"] != "failed":
        return
    sets = sorted({m["set"] for m in check.get("outputs", {}).values() if not m["ok"] and drawn.get(m.get("set"))})
    for label in sets:
        names = ", ".join(f"{n} ({src})" for n, src in sorted(drawn[label].items()))
        check["reason"] += (
            f"; inputs random in set '{label}': {names}; give real data with file= or value= (or verify.input_sets)"
        )
    if sets:
        check["random_inputs"] = {label: drawn[label] for label in sets}


# what ships is judged by these; the checks before them only name the stage a failure started in
FINAL = ("precision_rules", "engine")
NOT_EVALUATED = "not evaluated: the final check passed"


def _onnx_and_engine_checks(
    ctx: StageContext, model_sets: list, caller_sets: list, tol, build_meta: BuildMeta
) -> dict[str, dict]:
    """Every stage's check, keyed in the driver's stage order (ctx.inputs keeps it: the order a
    failure is attributed in), then the engine's. The final checks run first. The export and pass
    graphs' checks (FP32, their function) prove nothing more about what ships once those pass, so
    they evaluate only when a final check fails, to name the stage; a check whose every set the
    graph_passes stage already evaluated (evaluated_*.npz: no evaluation) runs as before.
    Measured (bench/eval_count.py, a 75 MB SD1.5-shaped UNet with one random set, verify alone,
    back to back on a loaded 2-core machine): 4 evaluations and 20.6 s before, 2 and 12.2 s now."""
    exp, passes, prec = (ctx.inputs.export.folder, ctx.inputs.graph_passes.folder, ctx.inputs.precision_rules.folder)
    earlier = {"export": (exp, model_sets), "graph_passes": (passes, caller_sets)}  # graph, input sets
    chain = [s for s in ctx.inputs if s in (*earlier, "precision_rules")]
    ahead = (ctx.prepared or {}).get("precision_rules")  # run while the engine built (final_onnx_check)
    done = {"precision_rules": {**ahead, "beside": "build"} if ahead else _precision_check(prec, caller_sets, tol)}

    # the pass graph of a stage whose passes modified nothing computes the export's nodes: on the
    # same feeds its outputs are the export check's, not a second evaluation of the same graph
    steps = ctx.inputs.graph_passes.meta.get("passes")
    unchanged = steps is not None and not any(p.get("modified", True) for p in steps)
    seen: dict[bytes, dict] = {}  # feeds digest -> the export graph's outputs
    plain = PLAIN_CUDA if choose_provider()[0] == CUDA_EP else PLAIN  # graph_passes' evaluations ran there too

    def run_earlier(lazy: bool) -> None:
        for stage in chain:
            if stage in earlier and stage not in done:
                folder, sets = earlier[stage]
                run, free = _reuse(passes, stage, runner(folder, "fp32"), sets)
                if free or not lazy:
                    done[stage] = _check(plain, _remembered(run, seen, stage == "export", unchanged), sets, tol)

    run_earlier(lazy=done["precision_rules"]["status"] != "failed")
    checkpoint("work:verify")
    engine = _engine_check(ctx.inputs.build.folder, dict(build_meta), caller_sets, tol)
    if engine["status"] == "failed":
        run_earlier(lazy=False)
    for stage in chain:
        done.setdefault(stage, {"status": "not evaluated", "kind": PLAIN, "seconds": 0.0, "reason": NOT_EVALUATED})
    return {**{s: done[s] for s in chain}, "engine": engine}


def final_onnx_check(ctx: StageContext) -> dict:
    """Verify's final ONNX check, the precision graph FP16-faithful against the FP32 reference,
    as verify_module runs it (the same function on the same inputs), for the stage's `ahead` run
    while the engine builds: ctx.inputs holds export and precision_rules only."""
    exp = ctx.inputs.export.folder
    caller_sets = input_sets(exp, ExportFiles.CALLER_INPUTS, ExportFiles.CALLER_REFERENCE)
    return {"precision_rules": _precision_check(ctx.inputs.precision_rules.folder, caller_sets, ctx.module.tolerance)}


def verify_module(ctx: StageContext, workdir: Path) -> dict:
    exp = ctx.inputs.export.folder
    model_sets = input_sets(exp, ExportFiles.INPUTS, ExportFiles.REFERENCE)
    caller_sets = input_sets(exp, ExportFiles.CALLER_INPUTS, ExportFiles.CALLER_REFERENCE)
    tol = ctx.module.tolerance
    # a reference that cannot be trusted (NaN/Inf, degenerate) ends the module before anything is
    # compared against it, and so does a `valid` input that does not line up with its output
    drawn = {e["label"]: e["random"] for e in set_listing(exp)}
    check_references(model_sets, tol, ctx.module.name, drawn)
    check_references(caller_sets, tol, ctx.module.name, drawn)
    prec = ctx.inputs.precision_rules.folder
    build_meta = meta(ctx.inputs.build, BuildMeta)  # what build.json holds, and its clock readings
    checks = _onnx_and_engine_checks(ctx, model_sets, caller_sets, tol, build_meta)
    # the bundle a user can check the engine with using polygraphy itself (published beside it)
    # (one pair of files per optimization profile: polygraphy runs one profile per command)
    bundle = write_bundle(caller_sets, build_meta["backend"], workdir, build_meta.get("profiles"))
    for check in checks.values():
        _note_random_inputs(check, drawn)
    failed = [s for s in checks if checks[s]["status"] == "failed"]
    # the pure-FP16 export and pass graphs may overflow on an FP16-faithful kernel (ORT's CPU
    # Attention-23 is one) before the precision rules add their islands: what ships is judged by
    # the precision_rules and engine checks; the earlier ones say where a failure started.
    final = [s for s in failed if s in FINAL]
    fp32 = meta(ctx.inputs.precision_rules, PrecisionMeta).get("fp32", {})
    verdict = {
        "checks": checks,
        "chain": list(checks),
        "passed": not final,
        "blame": failed[0] if final else None,
        "engine_checked": checks["engine"]["status"] == "ok",
        "input_sets": [s[0] for s in caller_sets],
        "polygraphy_bundle": bundle,
        "tolerances": {n: tol(n) for n in caller_sets[0][2]},
        **({"profiles": build_meta["profiles"]} if build_meta.get("profiles") else {}),
        "precision_map": precision_map(exp, prec, fp32),
    }
    (workdir / VerifyFiles.META).write_text(json.dumps(reproducible(verdict), indent=1))
    return verdict
