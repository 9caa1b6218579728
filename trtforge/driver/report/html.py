"""engines/report.html: the report.json data drawn for a release engineer, self-contained (inline
SVG and CSS, no scripts, no external assets): a table of contents, a status grid, time bars per
module and stage, an |error| histogram per output and check, and a per-block FP16/FP32 map.

A module built for several targets has one section: what its targets share (export, graph passes,
precision rules and their ONNX checks, warnings, the precision map) once, then per target its
build and engine check. Every SVG is as wide as its widest text by `text_width`, a conservative
estimate of the width system-ui draws (tests/test_report_layout.py checks it in a real browser
where one is installed), so no label is clipped at the right edge."""

from __future__ import annotations

import math
import re
from html import escape

from trtforge.artifacts import HIST_EDGES
from trtforge.data.dims import profile_lines
from trtforge.driver.stages import STAGE_NAMES
from trtforge.verify import metric_texts, ordered_checks, task_text

STAGES = STAGE_NAMES
STAGE_COLOURS = {
    "export": "#4c78a8",
    "graph_passes": "#72b7b2",
    "precision_rules": "#f58518",
    "build": "#b279a2",
    "verify": "#54a24b",
    "engine": "#e45756",
}
STATE_CLASS = {"ok": "ok", "cached": "cached", "failed": "failed", "not run": "notrun", "not evaluated": "notrun"}
PREC_COLOURS = {"fp16": "#4c78a8", "fp32": "#f58518", "cast": "#bab0ac"}
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1150px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}.ok{background:#e6f4e6}.cached{background:#eef1f4}.failed{background:#fde2e2}
.notrun{background:#fff6d6}.small{font-size:12px;color:#555}.fail{color:#b00020;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px}svg{background:#fff}text{font:11px system-ui,sans-serif}
"""


ONNX_CHECKS = STAGE_NAMES[:3]  # export, graph_passes, precision_rules: the same for every target


def text_width(text: str, px: float = 11.0, bold: bool = False) -> float:
    """An upper estimate of `text`'s width in system-ui at `px` (the browser's own font is not
    known here): capitals and wide glyphs 0.8 em, narrow ones 0.35 em, the rest 0.62 em."""
    em = sum(0.8 if c.isupper() or c in "mwMW@%" else 0.35 if c in "il.,:;'|!ftjI " else 0.62 for c in text)
    return em * px * (1.1 if bold else 1.0)


def fit(text: str, width: float, px: float = 11.0) -> str:
    """`text`, cut with an ellipsis to fit `width` (the full text goes in a <title>)."""
    if text_width(text, px) <= width:
        return text
    while text and text_width(text + "…", px) > width:
        text = text[:-1]
    return text + "…"


def anchor(kind: str, name: str) -> str:
    return f"{kind}-" + re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def by_module(mods: list) -> dict[str, list]:
    """Results grouped by module (one per target), in report order."""
    groups: dict[str, list] = {}
    for m in mods:
        groups.setdefault(m["name"].rsplit("/", 1)[-1], []).append(m)
    return groups


def render(report: dict) -> str:
    mods = report["modules"]
    groups = by_module(mods)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>trtforge report</title>",
        f"<style>{CSS}</style></head><body><h1>trtforge build report</h1>",
        _provenance(report),
        _contents(groups),
        "<h2 id='status'>Status</h2>",
        _summary(mods),
        "<h3 id='timing'>Time per module and stage</h3>",
        _time_bars(mods),
    ]
    for name, results in groups.items():
        parts.append(_module_group(name, results))
    parts.append("</body></html>")
    return "\n".join(parts)


def _contents(groups: dict[str, list]) -> str:
    items = ["<li><a href='#status'>Status</a></li>", "<li><a href='#timing'>Time per module and stage</a></li>"]
    for name, results in groups.items():
        failed = any(m.get("error") for m in results)
        sub = ""
        if _has_targets(results):
            sub = (
                "<ul>"
                + "".join(
                    f"<li><a href='#{anchor('target', m['name'])}'>{escape(m.get('target') or m['name'])}</a>"
                    + (" — failed" if m.get("error") else "")
                    + "</li>"
                    for m in results
                )
                + "</ul>"
            )
        items.append(
            f"<li><a href='#{anchor('module', name)}'>{escape(name)}</a>"
            + (" — failed" if failed else "")
            + f"{sub}</li>"
        )
    return "<nav id='contents'><h2>Contents</h2><ul>" + "".join(items) + "</ul></nav>"


def _has_targets(results: list) -> bool:
    return len(results) > 1 or bool(results[0].get("target"))


def _provenance(report: dict) -> str:
    """Where this report came from: overall result, versions, manifest digest, GPU, when, how long."""
    if "trtforge" not in report:
        return ""
    ok = report.get("ok")
    gpu = report.get("gpu")
    rows = [
        ("result", "PASSED" if ok else "FAILED"),
        ("trtforge", report["trtforge"]),
        ("backend", f"{report.get('backend')} {report.get('backend_version')}"),
        ("manifest", f"{report['manifest']['path']} (sha256 {report['manifest']['sha256']})"),
        ("GPU", ", ".join(gpu) if isinstance(gpu, list) else str(gpu)),
        ("started", report.get("started")),
        ("duration", f"{report.get('duration_s', 0):.2f}s"),
    ]
    cls = {"result": " class='ok'" if ok else " class='failed'"}
    cells = "".join(f"<tr><th>{k}</th><td{cls.get(k, '')}>{escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table class='provenance'>{cells}</table>"


def _cell(st: dict) -> str:
    text = st["state"] + (f" {st['seconds']:.2f}s" if st["state"] == "ok" else "")
    title = f" title='{escape(st['reason'])}'" if st.get("reason") else ""
    return f"<td class='{STATE_CLASS.get(st['state'], '')}'{title}>{escape(text)}</td>"


def _engine_cell(m: dict) -> str:
    eng = m["stages"]["verify"]["meta"].get("checks", {}).get("engine")
    if not eng:
        return "<td class='notrun'>not run</td>"
    text = eng.get("reason") or eng["status"]
    lat = eng.get("latency") or {}
    if lat:
        text += f" (p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms)"
    return f"<td class='{STATE_CLASS.get(eng['status'], '')}'>{escape(text)}</td>"


def _summary(mods: list) -> str:
    rows = ["<table><tr><th>module</th>" + "".join(f"<th>{s}</th>" for s in STAGES) + "<th>engine check</th></tr>"]
    for m in mods:
        rows.append(
            f"<tr><th>{escape(m['name'])}</th>"
            + "".join(_cell(m["stages"][s]) for s in STAGES)
            + _engine_cell(m)
            + "</tr>"
        )
    states = [m["stages"][s]["state"] for m in mods for s in STAGES]
    ran = sum(s in ("ok", "cached") for s in states)
    rows.append("</table>")
    rows.append(
        f"<p class='small'>cache hits: {states.count('cached')} of {ran} stages that ran; "
        f"stage time {sum(m['stages'][s]['seconds'] for m in mods for s in STAGES):.2f}s</p>"
    )
    return "\n".join(rows)


def _time_bars(mods: list) -> str:
    """One stacked bar per module, a segment per stage; cached stages have no width and say so."""
    label_w, bar_w, row_h = 140, 640, 22
    total = max([sum(_seconds(m["stages"][s]) for s in STAGES) for m in mods] + [1e-3])
    h = row_h * len(mods) + 40
    out: list[str] = []
    right: float = label_w + bar_w
    for i, m in enumerate(mods):
        y = 8 + i * row_h
        out.append(
            f"<text x='0' y='{y + 14}'>{escape(fit(m['name'], label_w - 6))}<title>{escape(m['name'])}</title></text>"
        )
        x: float = label_w
        for s in STAGES:
            st = m["stages"][s]
            secs = _seconds(st)
            w = bar_w * secs / total
            if w > 0:
                cached = st["state"] == "cached"
                what = f"cached; built in {secs:.3f}s" if cached else f"{secs:.3f}s"
                out.append(
                    f"<rect x='{x:.1f}' y='{y}' width='{max(w, 1):.1f}' height='{row_h - 6}' "
                    f"fill='{STAGE_COLOURS[s]}' fill-opacity='{0.35 if cached else 1}' stroke='#fff'>"
                    f"<title>{s}: {what}</title></rect>"
                )
            x += w
        ran = sum(m["stages"][s]["seconds"] for s in STAGES)
        cached = sum(m["stages"][s]["state"] == "cached" for s in STAGES)
        note = f"{ran:.2f}s this run" + (f" · {cached} cached" if cached else "")
        out.append(f"<text x='{x + 6:.1f}' y='{y + 14}' class='small'>{note}</text>")
        right = max(right, x + 6 + text_width(note, 12))  # .small: 12px
    legend, end = _legend_end(
        [(s, STAGE_COLOURS[s]) for s in STAGES] + [("pale: cached, time when built", "#ddd")], label_w, h - 14
    )
    width = math.ceil(max(right, end) + 8)
    return f"<svg width='{width}' height='{h}' role='img'>" + "".join(out) + legend + "</svg>"


def _seconds(st: dict) -> float:
    """This run's time, or for a cached stage the time it took when it was built."""
    if st["state"] == "cached":
        return float(st["meta"].get("run_seconds", 0.0))
    return st["seconds"]


def _legend(items: list, x0: float, y: float) -> str:
    return _legend_end(items, x0, y)[0]


def _legend_end(items: list, x0: float, y: float) -> tuple[str, float]:
    """The legend's SVG and the x where its last label ends."""
    out, x, end = [], x0, x0
    for name, colour in items:
        out.append(
            f"<rect x='{x:.1f}' y='{y - 9}' width='10' height='10' fill='{colour}'/>"
            f"<text x='{x + 14:.1f}' y='{y}'>{escape(name)}</text>"
        )
        end = x + 14 + text_width(name)
        x = end + 10
    return "".join(out), end


def _module_group(name: str, results: list) -> str:
    """A module's section: as before for a module without targets; with targets, what they share
    once (from the first target that verified), then each target's own build and engine check."""
    if not _has_targets(results):
        m = results[0]
        return "\n".join(
            [
                f"<h2 id='{anchor('module', name)}'>{escape(name)}</h2>",
                *_status(m, warnings=True),
                *_checks(m),
                _precision(m),
            ]
        )
    shared = next((m for m in results if m["stages"]["verify"]["meta"].get("checks")), results[0])
    targets = ", ".join(m.get("target") or m["name"] for m in results)
    parts = [
        f"<h2 id='{anchor('module', name)}'>{escape(name)}</h2>",
        f"<p class='small'>targets: {escape(targets)}. Export, graph passes and precision rules ran once for "
        "all of them (shown once below); build and engine check per target.</p>",
        "<h3>Export, passes and precision (shared by every target)</h3>",
        *[
            f"<p class='fail'>warning: {escape(w)}</p>"
            for w in dict.fromkeys(w for m in results for w in m.get("warnings", []))
        ],
        *_checks(shared, ONNX_CHECKS),
        _precision(shared),
    ]
    for m in results:
        parts.append(f"<h3 id='{anchor('target', m['name'])}'>target {escape(m.get('target') or m['name'])}</h3>")
        parts += _status(m, warnings=False)
        parts += _checks(m, ("engine",), chain=True)
    return "\n".join(parts)


def _status(m: dict, warnings: bool) -> list[str]:
    parts = []
    if m.get("error"):
        parts.append(f"<p class='fail'>FAILED — {escape(m['error'])}</p>")
    # the same notes and warnings REPORT.md lists
    parts += [f"<p class='small'>note: {escape(n)}</p>" for n in m.get("notes", [])]
    if warnings:
        parts += [f"<p class='fail'>warning: {escape(w)}</p>" for w in m.get("warnings", [])]
    if m.get("published"):
        parts.append(f"<p class='small'>published: {', '.join(escape(p) for p in m['published'])}</p>")
    return parts


def _checks(m: dict, only: tuple[str, ...] | None = None, chain: bool = True) -> list[str]:
    """The verification chain, |error| histograms and metrics; `only` these checks (all by default)."""
    verify = m["stages"]["verify"]["meta"]
    if not verify.get("checks"):
        return []
    parts = [_chain(verify)] if chain else []
    if only is not None:
        verify = {**verify, "checks": {s: c for s, c in verify["checks"].items() if s in only}}
        if not verify["checks"]:
            return parts
    sets = verify.get("input_sets") or ["example"]
    parts.append(f"<h3>|error| against the FP32 reference ({len(sets)} input set(s): {escape(', '.join(sets))})</h3>")
    parts += [
        f"<p class='small'>optimization profile {escape(line)}</p>"
        for line in profile_lines(verify.get("profiles") or [])
    ]
    parts.append(_histograms(verify))
    parts.append(_metrics_table(verify))
    return parts


def _precision(m: dict) -> str:
    verify = m["stages"]["verify"]["meta"]
    prec = m["stages"]["precision_rules"]["meta"]
    if not verify.get("precision_map"):
        return ""
    share = prec.get("flops", {}).get("fp16_share")
    head = f"{len(prec.get('fp32', {}))} FP32 nodes" + (
        f"; {share:.1%} of MatMul/Gemm/Conv FLOPs stay FP16" if share is not None else ""
    )
    return f"<h3>Precision per block ({escape(head)})</h3>" + _precision_map(verify["precision_map"])


def _chain(verify: dict) -> str:
    """export → graph_passes → precision_rules → engine, each check's status; the blamed one marked."""
    cells = []
    for stage, c in ordered_checks(verify):
        blamed = " — blamed" if verify.get("blame") == stage else ""
        cells.append(f"<td class='{STATE_CLASS.get(c['status'], '')}'><b>{stage}</b>: {c['status']}{blamed}</td>")
    return "<table><tr><th>verification chain</th>" + "<td>→</td>".join(cells) + "</tr></table>"


def _histograms(verify: dict) -> str:
    checks = verify["checks"]
    names = []
    for c in checks.values():
        names += [n for n in c.get("outputs", {}) if n not in names]
    charts = [
        _histogram(
            name,
            {s: c["outputs"][name] for s, c in ordered_checks(verify) if name in c.get("outputs", {})},
            verify.get("tolerances", {}).get(name, {}).get("atol"),
        )
        for name in names
    ]
    return "<div class='charts'>" + "".join(charts) + "</div>"


def _edge_x(value: float, x0: float, bin_w: float) -> float:
    """x of a value on the decade axis (edges 0, 1e-7 ... 10, inf)."""
    lo = math.log10(HIST_EDGES[1])
    return x0 + bin_w * (1 + min(max(math.log10(max(value, 1e-12)) - lo, -1), len(HIST_EDGES) - 2))


def _histogram(name: str, per_check: dict, atol: float | None) -> str:
    """Grouped bars: share of elements per |error| decade, one colour per check."""
    w, h, x0, y0, top = 520, 215, 44, 165, 30
    nbins = len(HIST_EDGES)  # the decades, then NaN/Inf
    bin_w = (w - x0 - 10) / nbins
    series = [
        (s, m["hist"] + [m.get("nonfinite", 0)])
        for s, m in per_check.items()
        if m.get("hist") is not None and sum(m["hist"]) + m.get("nonfinite", 0)
    ]
    title = f"output {name}: share of elements per |error| decade"
    out = [f"<text x='{x0}' y='13' font-weight='600'>{escape(title)}</text>"]
    right = x0 + text_width(title, bold=True)
    for frac in (0, 0.5, 1):
        y = y0 - frac * (y0 - top)
        out.append(
            f"<line x1='{x0}' x2='{w - 10}' y1='{y}' y2='{y}' stroke='#eee'/>"
            f"<text x='{x0 - 4}' y='{y + 4}' text-anchor='end'>{frac:.0%}</text>"
        )
    bar_w = (bin_w - 4) / max(len(series), 1)
    for k, (stage, hist) in enumerate(series):
        total = sum(hist)
        for b, count in enumerate(hist):
            if not count:
                continue
            bh = (y0 - top) * count / total
            out.append(
                f"<rect x='{x0 + b * bin_w + 2 + k * bar_w:.1f}' y='{y0 - bh:.1f}' width='{bar_w:.1f}' "
                f"height='{bh:.1f}' fill='{STAGE_COLOURS[stage]}'><title>{stage}: {count} of {total}"
                "</title></rect>"
            )
    labels = ["0"] + [f"1e{e}" for e in range(-7, 1)] + ["10"]  # left edges; the last decade runs to ∞
    for b, label in enumerate(labels):
        out.append(f"<text x='{x0 + b * bin_w}' y='{y0 + 14}' text-anchor='middle'>{label}</text>")
    out.append(
        f"<text x='{x0 + (nbins - 0.5) * bin_w}' y='{y0 + 14}' text-anchor='middle' fill='#b00020'>NaN/Inf</text>"
    )
    if atol:
        x = _edge_x(atol, x0, bin_w)
        out.append(
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{y0}' stroke='#b00020' "
            f"stroke-dasharray='4 3'/><text x='{x + 3:.1f}' y='{top + 8}' fill='#b00020'>atol</text>"
        )
    missing = [s for s, m in per_check.items() if m.get("hist") is None]
    if missing:  # a shape mismatch or a missing output: nothing to draw
        out.append(f"<text x='{x0}' y='{y0 + 30}' fill='#b00020'>no histogram: {escape(', '.join(missing))}</text>")
    if missing:
        right = max(right, x0 + text_width("no histogram: " + ", ".join(missing)))
    legend, end = _legend_end([(s, STAGE_COLOURS[s]) for s, _ in series], x0, h - 6)
    width = math.ceil(max(w, right + 8, end + 8))
    return f"<svg width='{width}' height='{h}' role='img'>" + "".join(out) + legend + "</svg>"


def _metrics_table(verify: dict) -> str:
    rows = [
        "<table><tr><th>check</th><th>status</th><th>kind</th><th>output</th><th>max abs</th>"
        "<th>max err / max ref</th><th>cosine</th><th>outside</th><th>task metric</th><th>worst set</th></tr>"
    ]
    for stage, c in ordered_checks(verify):
        outs = c.get("outputs") or {"–": {}}
        for name, m in outs.items():
            rows.append(
                f"<tr class='{STATE_CLASS.get(c['status'], '')}'><td>{stage}</td><td>{c['status']}</td>"
                f"<td class='small'>{escape(c['kind'])}</td><td>{escape(name)}</td>"
                + "".join(f"<td>{t}</td>" for t in metric_texts(m, "–"))
                + f"<td>{escape(task_text(m, '–'))}</td><td>{escape(m.get('set', '–'))}</td></tr>"
            )
        if c.get("reason"):
            rows.append(f"<tr><td></td><td colspan='9' class='small'>{escape(c['reason'])}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _precision_map(blocks: list) -> str:
    """A row per block, a square per node in graph order: FP16, FP32 (kept by a rule), Cast."""
    label_w, size, gap, per_row, cap = 150, 9, 2, 80, 800
    rows_per_block = [max(1, math.ceil(min(len(b["nodes"]), cap) / per_row)) for b in blocks]
    h = sum(r * (size + gap) + 8 for r in rows_per_block) + 30
    out: list[str] = []
    right: float = label_w + per_row * (size + gap)
    y = 4
    for b, nrows in zip(blocks, rows_per_block):
        nodes = b["nodes"][:cap]
        n32 = sum(n[2] == "fp32" for n in b["nodes"])
        out.append(
            f"<text x='0' y='{y + size}'>{escape(fit(b['block'], label_w - 6))}<title>{escape(b['block'])}</title></text>"
        )
        for i, (node, op, kind) in enumerate(nodes):
            x = label_w + (i % per_row) * (size + gap)
            yy = y + (i // per_row) * (size + gap)
            out.append(
                f"<rect x='{x}' y='{yy}' width='{size}' height='{size}' fill='{PREC_COLOURS[kind]}'>"
                f"<title>{escape(node)} ({escape(op)}): {kind}</title></rect>"
            )
        more = f" +{len(b['nodes']) - cap}" if len(b["nodes"]) > cap else ""
        x_end = label_w + min(len(nodes), per_row) * (size + gap) + 4
        label = f"{n32}/{len(b['nodes'])} FP32{more}"
        out.append(f"<text x='{x_end}' y='{y + size}' class='small'>{label}</text>")
        right = max(right, x_end + text_width(label, 12))  # .small: 12px
        y += nrows * (size + gap) + 8
    legend, end = _legend_end(
        [
            ("FP16", PREC_COLOURS["fp16"]),
            ("FP32 (rule)", PREC_COLOURS["fp32"]),
            ("Cast (realiser)", PREC_COLOURS["cast"]),
        ],
        label_w,
        h - 8,
    )
    width = math.ceil(max(right, end) + 8)
    return f"<svg width='{width}' height='{h}' role='img'>" + "".join(out) + legend + "</svg>"
