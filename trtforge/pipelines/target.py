"""`trtforge verify` on the target: each published pipeline re-run with the engines, against the
reference outputs published beside them. Where an engine cannot run here, it says which and why
(as for modules): `not run`, or failed with --require-engine-check.

The runner is the user's code: it is imported from the current folder (the project), as the build
imported it from the manifest's folder.
"""

from __future__ import annotations

import json
from pathlib import Path

STATUS = "pipelines/{}"


def _module_sidecar(folder: Path, modules: dict, name: str) -> dict | None:
    for key, entry in modules.items():
        if key.rsplit("/", 1)[-1] == name:
            try:
                return json.loads((folder / entry["sidecar"]).read_bytes()) | {"_sidecar": entry["sidecar"]}
            except (OSError, ValueError):
                return None
    return None


def check_on_target(folder: Path, name: str, entry: dict, modules: dict, require_engine_check: bool) -> dict:
    from trtforge.verify.engine_check import why_not_runnable

    label = STATUS.format(name)
    side = json.loads((folder / entry["sidecar"]).read_bytes())
    sides = {}
    for m in side["modules"]:
        found = _module_sidecar(folder, modules, m)
        if found is None:
            return {"module": label, "status": "failed", "reason": f"module '{m}' it calls is not published here"}
        sides[m] = found
    for m, s in sides.items():
        why = why_not_runnable({"backend": s["backend"], "target": s["target"]})
        if why:
            return {
                "module": label,
                "status": "failed" if require_engine_check else "not run",
                "reason": f"engine not run here: module '{m}': {why}",
            }
    return _run(folder, name, side, sides)


def _run(folder: Path, name: str, side: dict, sides: dict) -> dict:
    """Every engine runs here: the runner on them, judged as at build time (GPU lane only)."""
    from trtforge.data.tensors import load_arrays
    from trtforge.manifest.pipelines import PipelineSpec
    from trtforge.pipelines import verdict
    from trtforge.pipelines.check import Run, load_runner
    from trtforge.pipelines.harness import Recorder, Signature
    from trtforge.verify.engine_session import EngineSession

    base = folder / "pipelines" / name
    spec = PipelineSpec(name, tuple(side["modules"]), side["runner"], side["runner_args"], (), side["outputs"])
    runner = load_runner(spec, Path.cwd())
    signatures = {m: Signature.from_json(side["signatures"][m]) for m in spec.modules}
    engines = {}
    for m, s in sides.items():
        engine = folder / Path(s["_sidecar"]).parent / f"{m}.engine"
        engines[m] = EngineSession(engine, s["backend"], s.get("profiles"))
    inputs = load_arrays(base / "inputs.npz")
    outputs = Run(spec, signatures, runner, inputs)(engines, Recorder())
    judged = verdict.judge(name, outputs, load_arrays(base / "reference.npz"), spec.outputs, inputs)
    failed = verdict.failures(judged)
    return {"module": STATUS.format(name), "status": "failed" if failed else "ok", "reason": "; ".join(failed)}
