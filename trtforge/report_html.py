"""engines/report.html: the report.json data drawn for a release engineer, self-contained (inline
SVG and CSS, no scripts, no external assets): a status grid, time bars per module and stage, an
|error| histogram per output and check, and a per-block FP16/FP32 map."""

from __future__ import annotations

import math
from html import escape

from trtforge.dims import profile_lines
from trtforge.driver.stages import STAGE_NAMES
from trtforge.verify import HIST_EDGES, metric_texts, ordered_checks, task_text

STAGES = STAGE_NAMES
STAGE_COLOURS = {
    "export": "#4c78a8",
    "graph_passes": "#72b7b2",
    "precision_rules": "#f58518",
    "build": "#b279a2",
    "verify": "#54a24b",
    "engine": "#e45756",
}
STATE_CLASS = {"ok": "ok", "cached": "cached", "failed": "failed", "not run": "notrun"}
PREC_COLOURS = {"fp16": "#4c78a8", "fp32": "#f58518", "cast": "#bab0ac"}
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1150px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}.ok{background:#e6f4e6}.cached{background:#eef1f4}.failed{background:#fde2e2}
.notrun{background:#fff6d6}.small{font-size:12px;color:#555}.fail{color:#b00020;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px}svg{background:#fff}text{font:11px system-ui,sans-serif}
"""


def render(report: dict) -> str:
    mods = report["modules"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>trtforge report</title>",
        f"<style>{CSS}</style></head><body><h1>trtforge build report</h1>",
        _provenance(report),
        _summary(mods),
        "<h3>Time per module and stage</h3>",
        _time_bars(mods),
    ]
    for m in mods:
        parts.append(_module(m))
    parts.append("</body></html>")
    return "\n".join(parts)


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
    out = [f"<svg width='{label_w + bar_w + 200}' height='{h}' role='img'>"]
    for i, m in enumerate(mods):
        y = 8 + i * row_h
        out.append(f"<text x='0' y='{y + 14}'>{escape(m['name'])}</text>")
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
    out.append(
        _legend([(s, STAGE_COLOURS[s]) for s in STAGES] + [("pale: cached, time when built", "#ddd")], label_w, h - 14)
    )
    out.append("</svg>")
    return "".join(out)


def _seconds(st: dict) -> float:
    """This run's time, or for a cached stage the time it took when it was built."""
    if st["state"] == "cached":
        return float(st["meta"].get("run_seconds", 0.0))
    return st["seconds"]


def _legend(items: list, x0: float, y: float) -> str:
    out, x = [], x0
    for name, colour in items:
        out.append(
            f"<rect x='{x}' y='{y - 9}' width='10' height='10' fill='{colour}'/>"
            f"<text x='{x + 14}' y='{y}'>{escape(name)}</text>"
        )
        x += 24 + 7 * len(name)
    return "".join(out)


def _module(m: dict) -> str:
    verify = m["stages"]["verify"]["meta"]
    parts = [f"<h2>{escape(m['name'])}</h2>"]
    if m.get("error"):
        parts.append(f"<p class='fail'>FAILED — {escape(m['error'])}</p>")
    # the same notes and warnings REPORT.md lists
    parts += [f"<p class='small'>note: {escape(n)}</p>" for n in m.get("notes", [])]
    parts += [f"<p class='fail'>warning: {escape(w)}</p>" for w in m.get("warnings", [])]
    if m.get("published"):
        parts.append(f"<p class='small'>published: {', '.join(escape(p) for p in m['published'])}</p>")
    if verify.get("checks"):
        parts.append(_chain(verify))
        sets = verify.get("input_sets") or ["example"]
        parts.append(
            f"<h3>|error| against the FP32 reference ({len(sets)} input set(s): {escape(', '.join(sets))})</h3>"
        )
        parts += [
            f"<p class='small'>optimization profile {escape(line)}</p>"
            for line in profile_lines(verify.get("profiles") or [])
        ]
        parts.append(_histograms(verify))
        parts.append(_metrics_table(verify))
    prec = m["stages"]["precision_rules"]["meta"]
    if verify.get("precision_map"):
        share = prec.get("flops", {}).get("fp16_share")
        head = f"{len(prec.get('fp32', {}))} FP32 nodes" + (
            f"; {share:.1%} of MatMul/Gemm/Conv FLOPs stay FP16" if share is not None else ""
        )
        parts.append(f"<h3>Precision per block ({escape(head)})</h3>")
        parts.append(_precision_map(verify["precision_map"]))
    return "\n".join(parts)


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
    out = [
        f"<svg width='{w}' height='{h}' role='img'><text x='{x0}' y='13' font-weight='600'>"
        f"output {escape(name)}: share of elements per |error| decade</text>"
    ]
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
    out.append(_legend([(s, STAGE_COLOURS[s]) for s, _ in series], x0, h - 6))
    out.append("</svg>")
    return "".join(out)


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
    out = [f"<svg width='{label_w + per_row * (size + gap) + 60}' height='{h}' role='img'>"]
    y = 4
    for b, nrows in zip(blocks, rows_per_block):
        nodes = b["nodes"][:cap]
        n32 = sum(n[2] == "fp32" for n in b["nodes"])
        out.append(f"<text x='0' y='{y + size}'>{escape(b['block'][:22])}</text>")
        for i, (node, op, kind) in enumerate(nodes):
            x = label_w + (i % per_row) * (size + gap)
            yy = y + (i // per_row) * (size + gap)
            out.append(
                f"<rect x='{x}' y='{yy}' width='{size}' height='{size}' fill='{PREC_COLOURS[kind]}'>"
                f"<title>{escape(node)} ({escape(op)}): {kind}</title></rect>"
            )
        more = f" +{len(b['nodes']) - cap}" if len(b["nodes"]) > cap else ""
        x_end = label_w + min(len(nodes), per_row) * (size + gap) + 4
        out.append(f"<text x='{x_end}' y='{y + size}' class='small'>{n32}/{len(b['nodes'])} FP32{more}</text>")
        y += nrows * (size + gap) + 8
    out.append(
        _legend(
            [
                ("FP16", PREC_COLOURS["fp16"]),
                ("FP32 (rule)", PREC_COLOURS["fp32"]),
                ("Cast (realiser)", PREC_COLOURS["cast"]),
            ],
            label_w,
            h - 8,
        )
    )
    out.append("</svg>")
    return "".join(out)
