"""Layout checks of engines/report.html (issue 29), shared by tests/test_report_layout.py:

- `anchor_problems`: every in-page link resolves to an element id, and ids are unique;
- `overflow_problems`: every SVG label fits its SVG, by report_html.text_width's estimate of the
  width the browser draws (browser-free, so it runs everywhere);
- `browser_problems`: the same two properties measured in headless Chromium (playwright), where
  a browser is installed; `browser()` says why not otherwise.
"""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

from trtforge.driver.report.html import text_width


class _Layout(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.svg_width: float | None = None
        self.texts: list[tuple[float, dict, str]] = []  # (svg width, attrs, text)
        self._text: dict | None = None
        self._chars: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and (a.get("href") or "").startswith("#"):
            self.hrefs.append(a["href"][1:])
        if tag == "svg":
            self.svg_width = float(a["width"])
        elif tag == "text":
            self._text, self._chars = a, []
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "text" and self._text is not None:
            self.texts.append((self.svg_width or 0.0, self._text, "".join(self._chars)))
            self._text = None

    def handle_data(self, data):
        if self._text is not None and not self._in_title:
            self._chars.append(data)


def _parse(html: str) -> _Layout:
    p = _Layout()
    p.feed(html)
    p.close()
    return p


def anchor_problems(html: str) -> list[str]:
    p = _parse(html)
    out = [f"link #{h} has no target" for h in p.hrefs if h not in p.ids]
    out += [f"id '{i}' is used twice" for i in sorted({i for i in p.ids if p.ids.count(i) > 1})]
    return out


def overflow_problems(html: str) -> list[str]:
    out = []
    for width, attrs, text in _parse(html).texts:
        px = 12.0 if attrs.get("class") == "small" else 11.0
        w = text_width(text, px, bold=attrs.get("font-weight") == "600")
        x = float(attrs.get("x", 0))
        anchor = attrs.get("text-anchor", "start")
        left = x - w if anchor == "end" else x - w / 2 if anchor == "middle" else x
        if left < 0 or left + w > width:
            out.append(f"'{text}' spans {left:.0f}..{left + w:.0f} in an SVG {width:.0f} wide")
    return out


CHROMIUMS = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome", "chrome-headless-shell")


def browser() -> tuple[str | None, str]:
    """(executable or None for playwright's own, "") when a headless Chromium can be started here,
    else (None, why not)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, "playwright is not installed (pip install playwright; playwright install chromium)"
    exe = next((shutil.which(n) for n in CHROMIUMS if shutil.which(n)), None)
    for cand in ("/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/chromium"):
        if exe is None and Path(cand).is_file():
            exe = cand
    try:
        with sync_playwright() as p:
            p.chromium.launch(executable_path=exe).close()
    except Exception as e:  # no browser downloaded and none on the machine
        return None, f"no headless Chromium can start here: {str(e).splitlines()[0]}"
    return exe, ""


MEASURE = """() => {
  const out = [];
  for (const svg of document.querySelectorAll('svg')) {
    const box = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll('text')) {
      const r = t.getBoundingClientRect();
      if (r.right > box.right + 0.5 || r.left < box.left - 0.5)
        out.push(`'${t.textContent}' spans ${r.left.toFixed(0)}..${r.right.toFixed(0)}, its SVG ${box.left.toFixed(0)}..${box.right.toFixed(0)}`);
    }
  }
  for (const a of document.querySelectorAll('a[href^="#"]')) {
    const id = decodeURIComponent(a.getAttribute('href').slice(1));
    if (!document.getElementById(id)) out.push(`link #${id} has no target`);
  }
  return out;
}"""


def browser_problems(path: Path, exe: str | None) -> list[str]:
    """Render report.html in headless Chromium; every SVG label inside its SVG's box, every
    in-page link resolving, and following the first module link scrolls to that section."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe)
        try:
            page = b.new_page(viewport={"width": 1280, "height": 800})
            page.goto(path.resolve().as_uri())
            problems = list(page.evaluate(MEASURE))
            links = page.locator("nav#contents a[href^='#module-']")
            if links.count() == 0:
                return [*problems, "no table of contents linking to the modules"]
            link = links.first
            target = link.get_attribute("href") or ""
            link.click()
            top = page.evaluate(f"document.getElementById({target[1:]!r}).getBoundingClientRect().top")
            if not (-2 <= top <= 780):  # in view (a heading near the end cannot scroll to the top)
                problems.append(f"following {target} left its heading at y={top}")
            return problems
        finally:
            b.close()
