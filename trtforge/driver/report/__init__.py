"""engines/REPORT.md, report.json and report.html: a status table per module x stage, the precision
plan, metrics and timings, and where the report came from (trtforge and backend versions, the
manifest's digest, the GPU, start time, duration, overall pass/fail). Written even when a stage
fails. `build --module X` merges X into the previous report instead of replacing it."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trtforge.artifacts import VERSION
from trtforge.cache.atomic import atomic_write_if_changed
from trtforge.data.dims import profile_lines
from trtforge.driver.report.html import ONNX_CHECKS
from trtforge.driver.results import ModuleResult, StageStatus
from trtforge.driver.stages import STAGE_NAMES
from trtforge.errors import TrtforgeError
from trtforge.verify import left_out_lines, metric_texts, ordered_checks, task_text

if TYPE_CHECKING:
    from trtforge.manifest import Manifest


def _cell(status: StageStatus) -> str:
    if status.state in ("ok", "cached"):
        return status.state + (f" ({status.seconds:.1f}s)" if status.state == "ok" else "")
    return f"{status.state}: {status.reason}" if status.reason else status.state


def island_warning(r: ModuleResult) -> str | None:
    """FP32 islands in the FP16 export: a warning unless the manifest forbids them (the export then
    already failed naming the node) or expects them (export.expected_fp32_islands). Islands in an
    installed library's module (diffusers' timestep embedding: Sin/Cos in float32 on purpose) are
    named as the library's, with how to keep or silence them; the project's own are to be fixed."""
    islands = [i for i in r.stages["export"].meta.get("fp32_islands") or [] if not i.get("expected")]
    if not islands:
        return None
    groups: dict[tuple[str, str], list[dict]] = {}
    for i in islands:
        groups.setdefault((i.get("library", ""), i.get("in", "")), []).append(i)
    parts = [_island_group(lib, cls, members) for (lib, cls), members in groups.items()]
    return f"{len(islands)} FP32 island(s) in the FP16 export: " + "; ".join(parts)


def _island_group(library: str, cls: str, members: list[dict]) -> str:
    compute = [i for i in members if i["op"] != "Cast"] or members
    ops = ", ".join(dict.fromkeys(i["op"] for i in compute))
    scopes = sorted({i["scope"] for i in members if i.get("scope")})
    at = f" at {', '.join(scopes[:3])}" + (" ..." if len(scopes) > 3 else "") if scopes else ""
    if library:
        return (
            f"{len(members)} in {library} library code ({cls}{at}: {ops}), float32 on purpose; they "
            "stay FP32 in the engine, nothing to fix; to silence this, set "
            f'export.expected_fp32_islands = ["{cls}"] (or ["{library}"])'
        )
    shown = ", ".join(f"{i['node']} ({i['op']})" for i in compute[:3])
    return (
        (f"{len(members)} in {cls}{at}, " if cls else "")
        + f"e.g. {shown}: hard-coded float32 tensors run in FP32; fix them, or set "
        "export.forbid_fp32_islands = true to fail on them"
    )


def module_warnings(r: ModuleResult, rules_written: bool = True) -> list[str]:
    """What the user should see even when the build succeeded. Precision-rule warnings only for
    rules the manifest wrote: the built-in default matching nothing in a model without attention
    is expected, and stays in REPORT.md. The FP32-island warning only when the export ran in this
    build: a no-change build (export cached) does not repeat it; REPORT.md keeps it."""
    w = island_warning(r) if r.stages["export"].state == "ok" else None
    rules = list(r.stages["precision_rules"].meta.get("warnings", [])) if rules_written else []
    return ([w] if w else []) + rules


def report_warnings(r: ModuleResult) -> list[str]:
    """Every warning REPORT.md shows for a module (report.html shows the same list)."""
    w = island_warning(r)
    return ([w] if w else []) + list(r.stages["precision_rules"].meta.get("warnings", []))


def as_json(results: list[ModuleResult]) -> dict:
    return {
        "modules": [
            {
                "name": r.name,
                "ok": r.ok,
                "error": r.error.one_line() if r.error else None,
                "published": [str(p) for p in r.published],
                "notes": r.notes,
                "warnings": report_warnings(r),
                **({"remote": r.remote} if r.remote else {}),
                **({"target": r.target} if r.target else {}),
                **({"skipped": r.skipped} if r.skipped else {}),
                "stages": {
                    s: {
                        "state": st.state,
                        "reason": st.reason,
                        "seconds": round(st.seconds, 3),
                        "key": st.key,
                        "meta": st.meta,
                    }
                    for s, st in r.stages.items()
                },
            }
            for r in results
        ]
    }


def _before(build: dict) -> str:
    """The exported graph's layer count, parsed before the graph passes (shape folding)."""
    b = build.get("layers_before_passes") or {}
    return f"; before graph passes {b['layers']} layers ({b['shape_layers']} shape-only)" if "layers" in b else ""


def markdown(results: list[ModuleResult], head: dict | None = None) -> str:
    lines = ["# trtforge build report", ""]
    if head:
        lines += [_provenance_line(head), ""]
    lines += ["| module | " + " | ".join(STAGE_NAMES) + " | engine check |", "|---" * (len(STAGE_NAMES) + 2) + "|"]
    for r in results:
        engine = r.stages["verify"].meta.get("checks", {}).get("engine", {})
        echeck = engine.get("reason") or engine.get("status", "not run")
        lines.append(f"| {r.name} | " + " | ".join(_cell(r.stages[s]) for s in STAGE_NAMES) + f" | {echeck} |")
    lines += ["", _cache_line(results)]
    groups: dict[str, list[ModuleResult]] = {}
    for r in results:  # one section per module; with [targets], one per target inside it
        groups.setdefault(r.module, []).append(r)
    for name, group in groups.items():
        if len(group) == 1 and group[0].target is None:
            r = group[0]
            lines += ["", f"## {r.name}", ""]
            lines += _status_md(r, warnings=True)
            lines += _shared_md(r)
            lines += _target_md(r)
            lines += _checks_md(r.stages["verify"].meta)
            continue
        # what every target shares (export, passes, precision) once, from the first that verified
        shared = next((r for r in group if r.stages["verify"].meta.get("checks")), group[0])
        targets = ", ".join(r.target or r.name.rsplit("/", 1)[0] for r in group)
        lines += [
            "",
            f"## {name}",
            "",
            f"Targets: {targets}. Export, graph passes and precision rules ran once for all of them (shown "
            "once here); build and engine check per target.",
            "",
            "### Export, passes and precision (shared by every target)",
        ]
        warned = dict.fromkeys(w for r in group for w in report_warnings(r))  # once, not per target
        lines += ["", *(f"- warning: {w}" for w in warned)] if warned else []
        lines += _shared_md(shared)
        lines += _checks_md(shared.stages["verify"].meta, ONNX_CHECKS, profiles=False)
        for r in group:
            lines += ["", f"### {r.name}", ""]
            lines += _status_md(r, warnings=False)
            lines += _target_md(r)
            lines += _checks_md(r.stages["verify"].meta, ("engine",))
    return "\n".join(lines) + "\n"


def _status_md(r: ModuleResult, warnings: bool) -> list[str]:
    lines = [f"**FAILED** — {r.error.one_line()}"] if r.error else []
    lines += [f"- note: {note}" for note in r.notes]
    lines += [f"- warning: {w}" for w in report_warnings(r)] if warnings else []
    return lines + [f"- published `{p}`" for p in r.published]


def _shared_md(r: ModuleResult) -> list[str]:
    """The precision plan and the graph passes: the same for every target of the module."""
    lines = []
    prec = r.stages["precision_rules"].meta
    if prec:
        f = prec["flops"]
        lines += [
            "",
            f"Precision ({prec['realizer']}): {len(prec['fp32'])} FP32 nodes; "
            f"{f['fp16_share']:.2%} of MatMul/Gemm/Conv FLOPs stay FP16; casts {prec['casts']}",
        ]
        for node, why in list(prec["fp32"].items())[:40]:
            lines.append(f"- `{node}` ({why['op']}): {why['rule']} — {why['reason']}")
        for m in prec.get("near_misses", [])[:40]:
            lines.append(f"- near miss `{m['node']}`: {m['rule']} — {m['reason']}")
    passes = r.stages["graph_passes"].meta.get("passes", [])
    if passes:
        lines += ["", "| pass | modified | nodes before → after | ms | meaning check |", "|---|---|---|---|---|"]
        lines += [
            f"| {p['name']} | {p['modified']} | {p['nodes_before']} → {p['nodes_after']} | "
            f"{p['seconds'] * 1e3:.1f} | {p.get('check', '')} |"
            for p in passes
        ]
        lines += _pass_changes(passes)
    return lines


def _target_md(r: ModuleResult) -> list[str]:
    """The build line and the timings: each target's own."""
    lines = []
    build = r.stages["build"].meta
    if build:
        lines += [
            "",
            f"Build: {build['backend']} {build['backend_version']} for {build['target']['name']}; "
            f"{build['layers']} layers ({build['shape_layers']} shape-only){_before(build)}, "
            f"parse {build['parse_s']}s, build {build['build_s']}s, {build['engine_bytes']} bytes",
        ]
    return lines + [
        "",
        "Timings: " + ", ".join(_timing(s, r.stages[s]) for s in STAGE_NAMES if r.stages[s].state in ("ok", "cached")),
    ]


def _pass_changes(passes: list[dict], limit: int = 40) -> list[str]:
    """What the passes that name their changes changed (all of them are in report.json)."""
    changes = [f"- {p['name']}: {c}" for p in passes for c in p.get("changes", [])]
    more = [f"- ... {len(changes) - limit} more in report.json"] if len(changes) > limit else []
    return (["", "Changes:"] + changes[:limit] + more) if changes else []


def _timing(name: str, status: StageStatus) -> str:
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


def _checks_md(verify: dict, only: tuple[str, ...] | None = None, profiles: bool = True) -> list[str]:
    """The checks table (`only` these checks, all by default), after the optimization profiles."""
    checks = verify.get("checks", {})
    if only is not None:
        checks = {s: c for s, c in checks.items() if s in only}
        verify = {**verify, "checks": checks}
    if not checks:
        return []
    # dynamic dims: the engine's optimization profiles, each checked at its min, opt and max
    profile_list = [f"- profile {line}" for line in profile_lines(verify.get("profiles") or [])] if profiles else []
    lines = [
        "",
        *(["Optimization profiles:", *profile_list, ""] if profile_list else []),
        f"Input sets: {', '.join(verify.get('input_sets', ['example']))}",
        "",
        "| check | status | kind | output | max abs | max err / max ref | cosine | outside | task metric | worst set |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stage, c in ordered_checks(verify):
        outs = c.get("outputs") or {"-": {}}
        for name, m in outs.items():
            lines.append(
                f"| {stage} | {c['status']} | {c['kind']} | {name} | {' | '.join(metric_texts(m))} | "
                f"{task_text(m)} | {m.get('set', '-')} |"
            )
        if c.get("reason"):
            lines.append(f"| | | {c['reason']} | | | | | | | |")
        if c.get("latency"):
            lines.append(
                f"| | | latency p50 {c['latency']['p50_ms']:.3f} ms, p99 {c['latency']['p99_ms']:.3f} ms"
                " | | | | | | | |"
            )
    left = left_out_lines(verify)
    return lines + (["", "Left out of the comparison:", *(f"- {line}" for line in left)] if left else [])


VOLATILE = ("started", "duration_s")  # differ on every run; a no-op build must write nothing


def provenance(
    manifest: Manifest, results: list[ModuleResult], backend: str | None, started: float, duration: float
) -> dict:
    """Where this report came from. Paths relative to the output folder, so the folder can move."""
    from trtforge import backends as be

    pairs = []
    for r in results:
        m, meta = manifest.module(r.module), r.stages["build"].meta
        if meta.get("backend"):
            pair = (meta["backend"], meta["backend_version"])
        else:  # not built this run (a stage before it failed): what would have built it
            try:
                name = be.resolve(backend or m.build.backend, m.name)
            except TrtforgeError:  # the report names what was asked for rather than fail
                name = backend or m.build.backend
            pair = (name, be.version(name) if name in be.MODULE else None)
        if pair not in pairs:
            pairs.append(pair)
    gpus = be.gpus()
    return {
        "trtforge": VERSION,
        "backend": ", ".join(p[0] for p in pairs) or None,
        "backend_version": ", ".join(str(p[1]) for p in pairs) or None,
        "manifest": {
            "path": os.path.relpath(Path(manifest.path).resolve(), manifest.output_dir.resolve()),
            "sha256": hashlib.sha256(Path(manifest.path).read_bytes()).hexdigest(),
        },
        "gpu": [f"{g.name} (compute capability {g.compute_capability})" for g in gpus] or "none",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(duration, 3),
    }


def _provenance_line(head: dict) -> str:
    gpu = ", ".join(head["gpu"]) if isinstance(head["gpu"], list) else head["gpu"]
    return (
        f"{'PASSED' if head['ok'] else 'FAILED'} · trtforge {head['trtforge']} · {head['backend']} "
        f"{head['backend_version']} · manifest `{head['manifest']['path']}` sha256 "
        f"{head['manifest']['sha256'][:16]} · GPU: {gpu} · started {head['started']} · {head['duration_s']:.2f}s"
    )


def _merge(out_dir: Path, fresh: list[dict], order: list[str]) -> list[dict]:
    """`--module X`: X's entries replace theirs in the previous report; the other modules the
    manifest still names stay as they were reported; manifest order."""
    try:
        old = json.loads((out_dir / "report.json").read_text())["modules"]
        old = {m["name"]: m for m in old if isinstance(m, dict) and m.get("name") in order}
    except (OSError, ValueError, KeyError, TypeError):
        old = {}
    old.update({m["name"]: m for m in fresh})
    return [old[n] for n in order if n in old]


class _Said:
    """An error as a report recorded it (a module merged from the previous report)."""

    def __init__(self, line: str):
        self.line = line

    def one_line(self) -> str:
        return self.line


def _from_json(m: dict) -> ModuleResult:
    r = ModuleResult(
        m["name"],
        error=_Said(m["error"]) if m.get("error") else None,  # type: ignore[arg-type]  # quacks like one
        published=list(m.get("published", [])),
        notes=list(m.get("notes", [])),
    )
    r.stages = {
        s: StageStatus(
            st["state"], st.get("reason", ""), st.get("seconds", 0.0), st.get("key", ""), st.get("meta") or {}
        )
        for s, st in m["stages"].items()
    }
    return r


@dataclass(frozen=True)
class RunFacts:
    """What the reports say about the run as a whole: `partial` (a subset: the reports keep what
    this run did not build), the backend asked for, when it started and how long it took, the
    pipelines' verdicts, and `stale` ({entry: reason}): published entries this run did not build
    whose upstream keys moved on (driver/stale.py)."""

    partial: bool = False
    backend: str | None = None
    started: float | None = None
    duration: float = 0.0
    pipelines: list[dict] = field(default_factory=list)
    stale: dict[str, str] = field(default_factory=dict)


def write_reports(results: list[ModuleResult], manifest: Manifest, run: RunFacts | None = None) -> Path:
    """REPORT.md, report.json, report.html for this run's results."""
    run = run if run is not None else RunFacts()
    partial, backend, started, duration = run.partial, run.backend, run.started, run.duration
    pipelines, stale = run.pipelines, run.stale
    from trtforge.driver.report.html import render  # noqa: F811
    from trtforge.pipelines.report import html_section, markdown_section

    out_dir = manifest.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    modules = json.loads(json.dumps(as_json(results)["modules"], default=str))
    if partial:
        order = (
            [f"{t.name}/{m.name}" for m in manifest.modules for t in manifest.targets]
            if manifest.targets
            else [m.name for m in manifest.modules]
        )  # the names engines/index.json holds
        modules = _merge(out_dir, modules, order)
    for m in modules:
        if stale and stale.get(m["name"]):
            _mark_stale(m, stale[m["name"]])
    head = provenance(manifest, results, backend, time.time() if started is None else started, duration)
    head["ok"] = all(m["ok"] for m in modules)
    head["modules_built"] = [r.name for r in results]
    data = {**head, "modules": modules}
    if pipelines:  # [pipelines.NAME]: verdict, per-call error series, crossover blame
        data["pipelines"] = json.loads(json.dumps(pipelines, default=str))
        data["ok"] = data["ok"] and all(p["state"] in ("ok", "cached") for p in data["pipelines"])
    path = out_dir / "REPORT.md"
    if _same_but_times(out_dir / "report.json", data) and path.exists() and (out_dir / "report.html").exists():
        return path  # a no-op build writes (and fsyncs) nothing
    atomic_write_if_changed(out_dir / "report.json", json.dumps(data, indent=1).encode())
    html = render(data)
    if pipelines:
        html = html.replace("</body></html>", html_section(data["pipelines"]) + "</body></html>")
    atomic_write_if_changed(out_dir / "report.html", html.encode())
    md = markdown([_from_json(m) for m in modules], head)
    atomic_write_if_changed(path, (md + markdown_section(data["pipelines"]) if pipelines else md).encode())
    return path


def _mark_stale(m: dict, reason: str) -> None:
    """A report row of an engine that no longer matches the manifest: every stage says so."""
    m["stale"] = reason
    m["notes"] = [reason] + [n for n in m.get("notes", []) if not str(n).startswith("stale: ")]
    for st in m["stages"].values():
        st["state"], st["reason"] = "stale", reason


def _same_but_times(path: Path, data: dict) -> bool:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k not in VOLATILE}  # noqa: E731
    return isinstance(old, dict) and strip(old) == strip(json.loads(json.dumps(data)))


def status_table(results: list[ModuleResult]) -> str:
    width = max([len(r.name) for r in results] + [6])
    head = f"{'module':<{width}}  " + "  ".join(f"{s:<16}" for s in STAGE_NAMES)
    rows = [head]
    for r in results:
        rows.append(f"{r.name:<{width}}  " + "  ".join(f"{r.stages[s].state:<16}" for s in STAGE_NAMES))
    return "\n".join(rows)
