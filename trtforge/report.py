"""engines/REPORT.md and engines/report.json: a status table per module x stage, the precision
plan, metrics and timings. Written even when a stage fails."""

from __future__ import annotations

import json
from pathlib import Path

from trtforge.cache.store import atomic_write_if_changed
from trtforge.pipeline import STAGE_NAMES, ModuleResult
from trtforge.verify import metric_texts, ordered_checks, task_text


def _cell(status) -> str:
    if status.state in ("ok", "cached"):
        return status.state + (f" ({status.seconds:.1f}s)" if status.state == "ok" else "")
    return f"{status.state}: {status.reason}" if status.reason else status.state


def island_warning(r: ModuleResult) -> str | None:
    """FP32 islands in the FP16 export (hard-coded float32 tensors): a warning unless the manifest
    forbids them, in which case the export already failed naming the node."""
    islands = r.stages["export"].meta.get("fp32_islands") or []
    if not islands:
        return None
    compute = [i for i in islands if i["op"] != "Cast"] or islands
    shown = ", ".join(f"{i['node']} ({i['op']})" for i in compute[:3])
    return (f"{len(islands)} FP32 island(s) in the FP16 export, e.g. {shown}: hard-coded float32 "
            "tensors run in FP32; fix them, or set export.forbid_fp32_islands = true to fail on them")


def module_warnings(r: ModuleResult, rules_written: bool = True) -> list[str]:
    """What the user should see even when the build succeeded. Precision-rule warnings only for
    rules the manifest wrote: the built-in default matching nothing in a model without attention
    is expected, and stays in REPORT.md."""
    w = island_warning(r)
    rules = list(r.stages["precision_rules"].meta.get("warnings", [])) if rules_written else []
    return ([w] if w else []) + rules


def as_json(results: list[ModuleResult]) -> dict:
    return {"modules": [{
        "name": r.name, "ok": r.ok, "error": r.error.one_line() if r.error else None,
        "published": [str(p) for p in r.published], "notes": r.notes,
        "stages": {s: {"state": st.state, "reason": st.reason, "seconds": round(st.seconds, 3),
                       "key": st.key, "meta": st.meta} for s, st in r.stages.items()},
    } for r in results]}


def _before(build: dict) -> str:
    """The exported graph's layer count, parsed before the graph passes (shape folding)."""
    b = build.get("layers_before_passes") or {}
    return f"; before graph passes {b['layers']} layers ({b['shape_layers']} shape-only)" if "layers" in b else ""


def markdown(results: list[ModuleResult]) -> str:
    lines = ["# trtforge build report", "", "| module | " + " | ".join(STAGE_NAMES) + " | engine check |",
             "|---" * (len(STAGE_NAMES) + 2) + "|"]
    for r in results:
        engine = r.stages["verify"].meta.get("checks", {}).get("engine", {})
        echeck = engine.get("reason") or engine.get("status", "not run")
        lines.append(f"| {r.name} | " + " | ".join(_cell(r.stages[s]) for s in STAGE_NAMES) + f" | {echeck} |")
    lines += ["", _cache_line(results)]
    for r in results:
        lines += ["", f"## {r.name}", ""]
        if r.error:
            lines.append(f"**FAILED** — {r.error.one_line()}")
        for note in r.notes:
            lines.append(f"- note: {note}")
        if island_warning(r):
            lines.append(f"- warning: {island_warning(r)}")
        for p in r.published:
            lines.append(f"- published `{p}`")
        prec = r.stages["precision_rules"].meta
        if prec:
            f = prec["flops"]
            lines += ["", f"Precision ({prec['realizer']}): {len(prec['fp32'])} FP32 nodes; "
                      f"{f['fp16_share']:.2%} of MatMul/Gemm/Conv FLOPs stay FP16; casts {prec['casts']}"]
            for node, why in list(prec["fp32"].items())[:40]:
                lines.append(f"- `{node}` ({why['op']}): {why['rule']} — {why['reason']}")
            for m in prec.get("near_misses", [])[:40]:
                lines.append(f"- near miss `{m['node']}`: {m['rule']} — {m['reason']}")
            for w in prec["warnings"]:
                lines.append(f"- warning: {w}")
        passes = r.stages["graph_passes"].meta.get("passes", [])
        if passes:
            lines += ["", "| pass | modified | nodes before → after | ms | meaning check |", "|---|---|---|---|---|"]
            lines += [f"| {p['name']} | {p['modified']} | {p['nodes_before']} → {p['nodes_after']} | "
                      f"{p['seconds'] * 1e3:.1f} | {p.get('check', '')} |" for p in passes]
            lines += _pass_changes(passes)
        build = r.stages["build"].meta
        if build:
            lines += ["", f"Build: {build['backend']} {build['backend_version']} for {build['target']['name']}; "
                      f"{build['layers']} layers ({build['shape_layers']} shape-only){_before(build)}, "
                      f"parse {build['parse_s']}s, build {build['build_s']}s, {build['engine_bytes']} bytes"]
        lines += ["", "Timings: " + ", ".join(_timing(s, r.stages[s]) for s in STAGE_NAMES
                                             if r.stages[s].state in ("ok", "cached"))]
        lines += _checks_md(r.stages["verify"].meta)
    return "\n".join(lines) + "\n"


def _pass_changes(passes: list[dict], limit: int = 40) -> list[str]:
    """What the passes that name their changes changed (all of them are in report.json)."""
    changes = [f"- {p['name']}: {c}" for p in passes for c in p.get("changes", [])]
    more = [f"- ... {len(changes) - limit} more in report.json"] if len(changes) > limit else []
    return (["", "Changes:"] + changes[:limit] + more) if changes else []


def _timing(name: str, status) -> str:
    peak = status.meta.get("peak_rss_mib")
    mem = f", peak {peak / 1024:.2f} GiB" if peak else ""
    if status.state != "cached":
        return f"{name} {status.seconds:.2f}s{mem}"
    built = status.meta.get("run_seconds")
    return f"{name} cached" + (f" (built in {built:.2f}s{mem})" if built is not None else "")


def _cache_line(results: list[ModuleResult]) -> str:
    states = [r.stages[s].state for r in results for s in STAGE_NAMES]
    ran = sum(st in ("ok", "cached") for st in states)
    secs = sum(r.stages[s].seconds for r in results for s in STAGE_NAMES)
    return f"Cache hits: {states.count('cached')} of {ran} stages that ran; stage time {secs:.2f}s."


def _checks_md(verify: dict) -> list[str]:
    checks = verify.get("checks", {})
    if not checks:
        return []
    lines = ["", f"Input sets: {', '.join(verify.get('input_sets', ['example']))}", "",
             "| check | status | kind | output | max abs | max rel | cosine | outside | task metric | worst set |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for stage, c in ordered_checks(checks):
        outs = c.get("outputs") or {"-": {}}
        for name, m in outs.items():
            lines.append(f"| {stage} | {c['status']} | {c['kind']} | {name} | {' | '.join(metric_texts(m))} | "
                         f"{task_text(m)} | {m.get('set', '-')} |")
        if c.get("reason"):
            lines.append(f"| | | {c['reason']} | | | | | | | |")
        if c.get("latency"):
            lines.append(f"| | | latency p50 {c['latency']['p50_ms']:.3f} ms, p99 {c['latency']['p99_ms']:.3f} ms"
                         " | | | | | | | |")
    return lines


def write_reports(results: list[ModuleResult], out_dir: Path) -> Path:
    from trtforge.report_html import render

    out_dir.mkdir(parents=True, exist_ok=True)
    data = as_json(results)
    # unchanged reports are not rewritten: a no-op build writes (and fsyncs) nothing
    atomic_write_if_changed(out_dir / "report.json", json.dumps(data, indent=1, default=str).encode())
    atomic_write_if_changed(out_dir / "report.html", render(json.loads(json.dumps(data, default=str))).encode())
    path = out_dir / "REPORT.md"
    atomic_write_if_changed(path, markdown(results).encode())
    return path


def status_table(results: list[ModuleResult]) -> str:
    width = max([len(r.name) for r in results] + [6])
    head = f"{'module':<{width}}  " + "  ".join(f"{s:<16}" for s in STAGE_NAMES)
    rows = [head]
    for r in results:
        rows.append(f"{r.name:<{width}}  " + "  ".join(f"{r.stages[s].state:<16}" for s in STAGE_NAMES))
    return "\n".join(rows)
