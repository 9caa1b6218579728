"""`trtforge verify ENGINES_DIR`: on the target machine, check each published engine's bundle
against its sidecar digests (a corrupt or replaced file fails and is never deserialised), then
compatibility from the sidecar (backend and version, GPU, compute capability), then run it against
the bundled reference. Works on a copy of the engines folder anywhere: sidecar paths are relative."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

from trtforge.cache import digest_file
from trtforge.errors import TrtforgeError
from trtforge.manifest import TOLERANCE


def _tolerance(sidecar: dict):
    default = {k: v[1] for k, v in TOLERANCE.items()}
    return lambda name: sidecar.get("tolerance", {}).get(name, default)


def check_one(sidecar_path: Path, require_engine_check: bool) -> dict:
    from trtforge.verify.engine_check import run_engine_sets, why_not_runnable
    from trtforge.verify.metrics import compare_all, merge_sets
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
    reason = why_not_runnable({"backend": side["backend"], "target": side["target"]}) or _version_mismatch(side)
    if reason:
        return {"module": name, "status": "failed" if require_engine_check else "not run",
                "reason": f"engine not run here: {reason}"}
    sets = _bundle_sets(folder, name, side)
    try:
        outputs, latency = run_engine_sets(engine, [load_arrays(i) for i, _ in sets], side["backend"])
    except Exception as e:  # a runtime that refuses the engine is a failed check, not a crash
        return {"module": name, "status": "failed",
                "reason": f"engine did not run: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
    metrics = merge_sets([(label.name, compare_all(out, load_arrays(ref), _tolerance(side)))
                          for (label, ref), out in zip(sets, outputs)])
    bad = [f"{n}: {m['reason']}" for n, m in metrics.items() if not m["ok"]]
    return {"module": name, "status": "failed" if bad else "ok", "reason": "; ".join(bad),
            "outputs": metrics, "latency": latency}


def _bundle_sets(folder: Path, name: str, side: dict) -> list[tuple[Path, Path]]:
    """(inputs, reference) files of the example set and every random set the sidecar lists."""
    sets = [(folder / f"{name}.inputs.npz", folder / f"{name}.reference.npz")]
    for fname in sorted(side["files"]):
        if fname.startswith(f"{name}.inputs.r"):
            sets.append((folder / fname, folder / fname.replace(".inputs.r", ".reference.r", 1)))
    return sets


def _is_sidecar(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"module", "files", "backend", "target"} <= doc.keys()


def _version_mismatch(side: dict) -> str | None:
    from trtforge.build import backend as be

    here = be.version(side["backend"])
    if here != side["backend_version"]:
        return f"engine built with {side['backend']} {side['backend_version']}, this machine has {here}"
    return None


def verify_published(folder: Path, require_engine_check: bool, junit: str | None, echo,
                     collect: list | None = None) -> int:
    # sidecars are recognised by content, not by an engine beside them: a missing engine must fail
    sidecars = [p for p in sorted(folder.rglob("*.json")) if _is_sidecar(p)]
    if not sidecars:
        raise TrtforgeError("no published engines (<module>.engine + <module>.json) found", where=str(folder),
                          hint="pass the engines folder that `trtforge build` wrote")
    results = [check_one(p, require_engine_check) for p in sidecars]
    if collect is not None:
        collect.extend(results)
    for r in results:
        echo(f"{r['module']}: {r['status']}" + (f": {r['reason']}" if r.get("reason") else ""))
    if junit:
        Path(junit).parent.mkdir(parents=True, exist_ok=True)
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
