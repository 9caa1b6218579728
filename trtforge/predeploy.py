"""`trtforge verify ENGINES_DIR`: on the target machine, check each published engine's sidecar for
compatibility first, its digest second, then run it against the bundled reference."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

from trtforge.cache import digest_file
from trtforge.errors import VerifyError
from trtforge.manifest import TOLERANCE


def _tolerance(sidecar: dict):
    default = {k: v[1] for k, v in TOLERANCE.items()}
    return lambda name: sidecar.get("tolerance", {}).get(name, default)


def check_one(sidecar_path: Path, require_engine_check: bool) -> dict:
    from trtforge.verify.engine_check import run_engine, why_not_runnable
    from trtforge.verify.metrics import compare_all
    from trtforge.tensors import load_arrays

    side = json.loads(sidecar_path.read_text())
    name, folder = side["module"], sidecar_path.parent
    engine = folder / f"{name}.engine"
    for fname, digest in side["files"].items():
        path = folder / fname
        if not path.exists():
            return {"module": name, "status": "failed",
                    "reason": f"{path} is missing; copy the whole engines folder (engine, sidecar, bundle)"}
        if digest_file(path, trust_memo=False) != digest:
            return {"module": name, "status": "failed",
                    "reason": f"{path} does not match its sidecar digest (corrupt or replaced); not "
                              "deserialised; copy the engines folder again or rebuild"}
    reason = why_not_runnable({"backend": side["backend"], "target": side["target"]})
    if reason:
        return {"module": name, "status": "failed" if require_engine_check else "not run",
                "reason": f"engine not run here: {reason}"}
    outputs, latency = run_engine(engine, load_arrays(folder / f"{name}.inputs.npz"), side["backend"])
    metrics = compare_all(outputs, load_arrays(folder / f"{name}.reference.npz"), _tolerance(side))
    bad = [f"{n}: {m['reason']}" for n, m in metrics.items() if not m["ok"]]
    return {"module": name, "status": "failed" if bad else "ok", "reason": "; ".join(bad),
            "outputs": metrics, "latency": latency}


def verify_published(folder: Path, require_engine_check: bool, junit: str | None, echo,
                     collect: list | None = None) -> int:
    sidecars = sorted(p for p in folder.rglob("*.json") if p.name not in ("report.json",))
    sidecars = [p for p in sidecars if (p.parent / (p.stem + ".engine")).exists()]
    if not sidecars:
        raise VerifyError("no published engines (<module>.engine + <module>.json) found", where=str(folder),
                          hint="pass the engines folder that `trtforge build` wrote")
    results = [check_one(p, require_engine_check) for p in sidecars]
    if collect is not None:
        collect.extend(results)
    for r in results:
        echo(f"{r['module']}: {r['status']}" + (f": {r['reason']}" if r.get("reason") else ""))
    if junit:
        Path(junit).write_text(junit_xml(results))
    return sum(r["status"] == "failed" for r in results)


def junit_xml(results: list[dict]) -> str:
    cases = []
    for r in results:
        body = ""
        if r["status"] == "failed":
            body = f'<failure message="{escape(r["reason"], {chr(34): "&quot;"})}"/>'
        elif r["status"] == "not run":
            body = f'<skipped message="{escape(r["reason"], {chr(34): "&quot;"})}"/>'
        cases.append(f'  <testcase classname="trtforge.verify" name="{escape(r["module"])}">{body}</testcase>')
    failures = sum(r["status"] == "failed" for r in results)
    skipped = sum(r["status"] == "not run" for r in results)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="trtforge" tests="{len(results)}" '
            f'failures="{failures}" skipped="{skipped}">\n' + "\n".join(cases) + "\n</testsuite>\n")
