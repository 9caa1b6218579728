"""The pipeline pieces of REPORT.md and report.html: the verdict per output, the crossover runs,
and the error of every module call against the reference's same call (table and plot)."""

from __future__ import annotations

import html
import math

HEADLINE = "rel_l2"  # ||published - reference|| / ||reference|| of the call's first output


def call_value(entry: dict) -> float | None:
    """A call's headline error: the largest relative L2 error over its outputs."""
    values = [o.get(HEADLINE) for o in entry.get("outputs", {}).values() if o.get(HEADLINE) is not None]
    if any("nonfinite" in o for o in entry.get("outputs", {}).values()):
        return math.inf
    return max(values) if values else None


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if math.isfinite(v) else str(v)
    return str(v)


def _output_cell(m: dict) -> str:
    if "metric" in m and "value" in m:
        text = f"{m['metric']} {_fmt(m['value'])} (min {_fmt(m['min'])})"
    else:
        text = f"max_abs {_fmt(m.get('max_abs'))}, cosine {_fmt(m.get('cosine'))}"
    return text + ("" if m.get("ok") else f" — **{m.get('reason', 'failed')}**")


def markdown_section(pipes: list[dict]) -> str:
    lines = ["", "## Pipelines", ""]
    for p in pipes:
        head = f"### {p['name']}: {p['state']}"
        lines += [head, ""]
        if p.get("reason"):
            lines += [f"{p['reason']}", ""]
        if p.get("blame"):
            lines += [f"The crossover blames module **{p['blame']}**.", ""]
        lines += [f"- note: {n}" for n in p.get("notes", [])]
        if p.get("outputs"):
            lines += ["", "| output | published vs reference |", "| --- | --- |"]
            lines += [f"| {n} | {_output_cell(m)} |" for n, m in p["outputs"].items()]
        if p.get("crossover"):
            lines += [
                "",
                "| crossover (this module published, others FP32) | passed | outputs |",
                "| --- | --- | --- |",
            ]
            for mod, c in p["crossover"].items():
                summary = "; ".join(f"{n}: {_output_cell(m)}" for n, m in c["outputs"].items())
                lines.append(f"| {mod} | {'yes' if c['passed'] else 'no'} | {summary} |")
        series = p.get("series") or {}
        if series:
            lines += ["", f"Error of each call against the reference's same call ({HEADLINE}, worst output):", ""]
            mods = [m for m in p.get("order") or [] if m in series] or list(series)
            lines += ["| call | " + " | ".join(mods) + " |", "| --- |" + " --- |" * len(mods)]
            for i in range(max(map(len, series.values()))):
                cells = [_fmt(call_value(series[m][i])) if i < len(series[m]) else "" for m in mods]
                lines.append(f"| {i} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def plot(series: dict, width: int = 520, height: int = 220, order: list | None = None) -> str:
    """Inline SVG: each module's per-call error, log scale (errors grow by orders of magnitude)."""
    points = {m: [(i, call_value(c)) for i, c in enumerate(series[m])] for m in order or series if m in series}
    values = [v for pts in points.values() for _, v in pts if v is not None and math.isfinite(v) and v > 0]
    if not values:
        return "<p class='small'>every call matched the reference exactly</p>"
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    hi = max(hi, lo + 1)
    n = max(len(p) for p in points.values())
    x0, y0, w, h = 50, 10, width - 160, height - 40

    def xy(i, v):
        x = x0 + (w * i / max(n - 1, 1))
        y = y0 + h * (1 - (math.log10(v) - lo) / (hi - lo))
        return f"{x:.1f},{y:.1f}"

    parts = [f"<svg width='{width}' height='{height}' role='img'>"]
    for d in range(lo, hi + 1):
        y = y0 + h * (1 - (d - lo) / (hi - lo))
        parts.append(f"<line x1='{x0}' x2='{x0 + w}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>")
        parts.append(f"<text x='4' y='{y + 4:.1f}'>1e{d}</text>")
    parts.append(
        f"<text x='{x0}' y='{height - 8}'>call 0</text><text x='{x0 + w - 40}' y='{height - 8}'>call {n - 1}</text>"
    )
    for k, (mod, pts) in enumerate(points.items()):
        colour = COLOURS[k % len(COLOURS)]
        good = [(i, v) for i, v in pts if v is not None and math.isfinite(v) and v > 0]
        if good:
            path = " ".join(xy(i, v) for i, v in good)
            parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{path}'/>")
            parts += [
                f"<circle r='2.5' fill='{colour}' cx='{xy(i, v).split(',')[0]}' cy='{xy(i, v).split(',')[1]}'/>"
                for i, v in good
            ]
        parts.append(f"<text x='{x0 + w + 10}' y='{y0 + 14 * (k + 1)}' fill='{colour}'>{html.escape(mod)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def html_section(pipes: list[dict]) -> str:
    parts = ["<h2>Pipelines</h2>"]
    for p in pipes:
        cls = "" if p["state"] in ("ok", "cached") else " class='fail'"
        parts.append(f"<h3{cls}>{html.escape(p['name'])}: {html.escape(p['state'])}</h3>")
        if p.get("reason"):
            parts.append(f"<p>{html.escape(p['reason'])}</p>")
        if p.get("blame"):
            parts.append(f"<p>The crossover blames module <b>{html.escape(p['blame'])}</b>.</p>")
        for note in p.get("notes", []):
            parts.append(f"<p class='small'>{html.escape(note)}</p>")
        if p.get("outputs"):
            rows = "".join(
                f"<tr><td>{html.escape(n)}</td><td>{html.escape(_output_cell(m).replace('**', ''))}</td></tr>"
                for n, m in p["outputs"].items()
            )
            parts.append(f"<table><tr><th>output</th><th>published vs reference</th></tr>{rows}</table>")
        if p.get("series"):
            parts.append(
                f"<p class='small'>Error of each module call against the reference's same call ({HEADLINE})</p>"
            )
            parts.append(plot(p["series"], order=p.get("order")))
    return "\n".join(parts)
