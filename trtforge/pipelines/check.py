"""The pipeline check itself, run in a child process (it loads torch and the user's runner):

(a) every module as its FP32 PyTorch module: the reference run;
(b) every module as published (the final graph on the FP16-faithful evaluator), each call
    compared with the same call of (a): the per-call error series;
(c) when (b) fails, one crossover run per module (that module as published, the others FP32),
    which names the module that drifts.

Writes inputs.npz, reference.npz (the reference run's outputs) and published.npz into the
workdir; returns the metadata the report and the verdict read.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from trtforge.data.tensors import make_inputs, save_arrays
from trtforge.manifest import Manifest
from trtforge.manifest.pipelines import PipelineSpec
from trtforge.pipelines import verdict
from trtforge.pipelines.harness import (
    ModuleHandle,
    Modules,
    OnnxModule,
    PipelineError,
    Recorder,
    Signature,
    TorchModule,
)
from trtforge.pipelines.published import INPUTS, PUBLISHED, REFERENCE
from trtforge.user_code import resolve_callable


def load_runner(spec: PipelineSpec, root: Path):
    return resolve_callable(spec.runner, root, where=f"pipelines.{spec.name}.runner", error=PipelineError)


def _as_numpy(name: str, value, spec: PipelineSpec) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise PipelineError(
            f"the runner returned {type(value).__name__} for output '{name}', not a tensor",
            where=f"pipelines.{spec.name}.runner",
            hint="return a dict of torch tensors or numpy arrays",
        )
    return np.ascontiguousarray(arr.astype(np.float32) if np.issubdtype(arr.dtype, np.floating) else arr)


class Run:
    """One run of the runner with a backend per module (`signatures`: what each call is checked
    against; the pipeline `spec` gives the runner's arguments and the outputs it must return)."""

    def __init__(self, spec: PipelineSpec, signatures: dict[str, Signature], runner, inputs: dict):
        self.spec, self.signatures, self.runner, self.inputs = spec, signatures, runner, inputs

    def __call__(self, backends: dict, recorder: Recorder) -> dict:
        handles = {
            name: ModuleHandle(self.spec.name, self.signatures[name], backends[name], recorder)
            for name in self.spec.modules
        }
        tensors = {k: torch.from_numpy(v.copy()) for k, v in self.inputs.items()}
        where = f"pipelines.{self.spec.name}.runner"
        try:
            with torch.no_grad():
                out = self.runner(Modules(handles), **tensors, **self.spec.runner_args)
        except (KeyboardInterrupt, PipelineError):
            raise
        except Exception as e:
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            raise PipelineError(
                f"runner raised {type(e).__name__}: {first}", where=where, hint="run it in Python to see the traceback"
            ) from e
        if not isinstance(out, dict):
            raise PipelineError(f"runner returned {type(out).__name__}, not a dict of outputs", where=where)
        missing = [n for n in self.spec.outputs if n not in out]
        if missing:
            raise PipelineError(
                f"runner returned no output '{missing[0]}' (it returned {', '.join(map(str, out)) or 'nothing'})",
                where=f"pipelines.{self.spec.name}.outputs.{missing[0]}",
                hint="check the output names against what the runner returns",
            )
        return {n: _as_numpy(n, out[n], self.spec) for n in self.spec.outputs}


def open_engines(engines: dict[str, dict]) -> dict:
    """{module: EngineSession} for modules whose engine runs here ({path, backend, profiles})."""
    from trtforge.verify.engine_session import EngineSession

    return {n: EngineSession(Path(e["path"]), e["backend"], e.get("profiles")) for n, e in engines.items()}


def crossovers(run: Run, fp32: dict, swapped: dict, reference: dict) -> dict:
    """One run per module: that module as `swapped` holds it (published: its FP16 graph, or its
    engine when only the engines fail), the others FP32; judged like the published run."""
    spec, out = run.spec, {}
    for name in spec.modules:
        mixed = {n: (swapped[n] if n == name else fp32[n]) for n in spec.modules}
        j = verdict.judge(spec.name, run(mixed, Recorder()), reference, spec.outputs, run.inputs)
        out[name] = {"passed": not verdict.failures(j), "badness": verdict.badness(j), "outputs": j}
    return out


def check_pipeline(
    spec: PipelineSpec, manifest: Manifest, finals: dict[str, Path], workdir: Path, engines: dict | None = None
) -> dict:
    """The three kinds of run; `finals` maps each module to its final (precision_rules) folder;
    `engines` (when every module's engine runs here) adds the published run on the engines."""
    t0 = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference is true FP32
    inputs = make_inputs(spec.inputs, spec.seed, root=manifest.root, where=f"pipelines.{spec.name}.inputs")
    runner = load_runner(spec, manifest.root)
    signatures = {name: Signature.of(manifest.module(name)) for name in spec.modules}
    run = Run(spec, signatures, runner, inputs)
    fp32 = {name: TorchModule(manifest.module(name), manifest.root) for name in spec.modules}
    published = {name: OnnxModule(manifest.module(name), finals[name]) for name in spec.modules}

    ref_rec = Recorder()
    reference = run(fp32, ref_rec)
    verdict.check_reference(spec.name, reference, inputs, spec.outputs)
    save_arrays(workdir / INPUTS, inputs)
    save_arrays(workdir / REFERENCE, reference)
    t_ref = time.perf_counter() - t0

    pub_rec = Recorder(reference=ref_rec)
    outputs = run(published, pub_rec)
    save_arrays(workdir / PUBLISHED, outputs)
    judged = verdict.judge(spec.name, outputs, reference, spec.outputs, inputs)
    failed = verdict.failures(judged)
    result: dict = {"engine": None}
    swapped: dict = published  # what a crossover swaps in: the form that failed
    if engines:  # the engines themselves, where they run: judged the same way
        sessions = open_engines(engines)
        eng_rec = Recorder(reference=ref_rec)
        eng_judged = verdict.judge(spec.name, run(sessions, eng_rec), reference, spec.outputs, inputs)
        result["engine"] = {"outputs": eng_judged, "series": eng_rec.series}
        if verdict.failures(eng_judged) and not failed:  # the graphs pass: an engine drifts
            swapped = sessions
        failed += [f"engine {f}" for f in verdict.failures(eng_judged)]

    crossover = crossovers(run, fp32, swapped, reference) if failed and len(spec.modules) > 1 else {}
    if crossover:
        result["crossover_on"] = "engines" if swapped is not published else "fp16 graph"
    blamed = verdict.blame(crossover) if failed else None
    if failed and blamed is None:
        blamed = spec.modules[0]  # one module: it is the one
    return {
        **result,
        "pipeline": spec.name,
        "order": list(spec.modules),  # the record's keys are sorted; lists keep the manifest's order
        "passed": not failed,
        "reason": "; ".join(failed),
        "outputs": judged,
        "calls": {name: ref_rec.count(name) for name in spec.modules},
        "series": pub_rec.series,
        "crossover": crossover,
        "blame": blamed,
        "signatures": {name: sig.as_json() for name, sig in signatures.items()},
        "seconds": {"reference": round(t_ref, 3), "total": round(time.perf_counter() - t0, 3)},
    }
