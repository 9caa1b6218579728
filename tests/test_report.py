"""engines/REPORT.md, report.json and report.html from one build with a passing ViT, an export bug
and a factory that cannot be imported: the reports are written even when stages fail; the HTML is
self-contained and draws a status grid, time bars, an |error| histogram per output and check, and
a per-block FP16/FP32 map that agrees with the precision plan; a no-op rebuild reports cache hits."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import ONNX_STAGES, REPO, run_cli
from tests.verify.faults import faults_project
from trtforge.verify.run import NOT_EVALUATED

pytestmark = pytest.mark.slow  # the console script on real builds


MANIFEST = """
[defaults]
build = { backend = "tensorrt-rtx" }

[modules.vit]
factory = "examples.vit:make_vit"
factory_args = { depth = 2, dim = 32, heads = 2, patch = 16 }
inputs.image = { shape = [1, 3, 64, 64], dtype = "float16" }
outputs = ["logits", "tokens"]
verify.random_inputs = 1

[modules.export_bug]
factory = "faults.modules:make_arange"
inputs.x = { shape = [1, 4096], dtype = "float16" }
outputs = ["y"]

[modules.broken]
factory = "faults.modules:no_such_factory"
inputs.x = { shape = [1, 4], dtype = "float16" }
"""


class Tags(HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self):
        super().__init__()
        self.stack, self.counts, self.rects, self.refs = [], {}, [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.counts[tag] = self.counts.get(tag, 0) + 1
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "rect":
            self.rects.append(a)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # <rect .../>: nothing left open
        self.handle_starttag(tag, attrs)
        self.stack.pop()

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    faults_project(root, MANIFEST)
    proc = run_cli("build", "engines.toml", cwd=root)
    return root, proc


def _html(root: Path) -> tuple[str, Tags]:
    text = (root / "engines" / "report.html").read_text()
    tags = Tags()
    tags.feed(text)
    tags.close()
    return text, tags


def test_reports_written_even_when_stages_fail(built):
    root, proc = built
    assert proc.returncode == 3  # the worst of: export error (2), verification failed (3)
    report = json.loads((root / "engines" / "report.json").read_text())
    states = {m["name"]: m["stages"] for m in report["modules"]}
    assert states["broken"]["export"]["state"] == "failed"
    assert states["export_bug"]["verify"]["state"] == "failed"
    md = (root / "engines" / "REPORT.md").read_text()
    assert "failed: module 'broken'" in md and "failed at export" in md
    engine_rows = [line for line in md.splitlines() if line.startswith("| engine | not run |")]
    assert engine_rows and all("nan" not in line and "| - | - | - | - |" in line for line in engine_rows)
    text, _ = _html(root)
    assert "no_such_factory" in text and "verification failed at stage &#x27;export&#x27;" in text


def test_html_is_balanced_and_self_contained(built):
    text, tags = _html(built[0])
    assert tags.stack == ["html"] or tags.stack == []
    external = [r for r in tags.refs if not r.startswith("#")]  # in-page anchors: the table of contents
    assert not external and "<script" not in text and "url(" not in text  # no external assets
    assert tags.counts["svg"] >= 1 + 3 + 1  # time bars, 3 histograms (2 vit outputs + 1), a precision map


def test_histograms_count_every_element_of_every_set(built):
    root, _ = built
    report = json.loads((root / "engines" / "report.json").read_text())
    vit = next(m for m in report["modules"] if m["name"] == "vit")
    checks = vit["stages"]["verify"]["meta"]["checks"]
    shape = vit["stages"]["export"]["meta"]["outputs"]["tokens"]["shape"]
    n = 2 * eval("*".join(map(str, shape)))  # example + 1 random set
    assert sum(checks["precision_rules"]["outputs"]["tokens"]["hist"]) == n
    for stage in ONNX_STAGES[:-1]:  # the final check passed: not evaluated on the random set
        assert checks[stage]["reason"] == NOT_EVALUATED
    text, _ = _html(root)
    assert text.count("share of elements per |error| decade") == 3


def test_precision_map_agrees_with_the_plan(built):
    root, _ = built
    report = json.loads((root / "engines" / "report.json").read_text())
    vit = next(m for m in report["modules"] if m["name"] == "vit")
    pmap = vit["stages"]["verify"]["meta"]["precision_map"]
    assert [b["block"] for b in pmap if b["block"].startswith("blocks.")] == ["blocks.0", "blocks.1"]
    fp32 = {n[0] for b in pmap for n in b["nodes"] if n[2] == "fp32"}
    assert fp32 == set(vit["stages"]["precision_rules"]["meta"]["fp32"])
    for b in pmap:  # the attention-score islands sit in the transformer blocks, with their Casts
        kinds = {n[2] for n in b["nodes"]}
        assert ("fp32" in kinds) == b["block"].startswith("blocks.")
        assert ("cast" in kinds) == ("fp32" in kinds)
    text, tags = _html(root)
    section = text.split("<h2 id='module-vit'>vit</h2>")[1].split("<h2 ")[0]
    assert len(re.findall(r"<rect [^>]*><title>[^<]*\): fp32</title>", section)) == len(fp32)  # a square each


def test_noop_rebuild_reports_cache_hits_and_timings(built):
    root, _ = built
    run_cli("build", "engines.toml", cwd=root)
    md = (root / "engines" / "REPORT.md").read_text()
    hits = re.search(r"Cache hits: (\d+) of (\d+) stages that ran", md)
    # vit 5 + export_bug 4 (its verify is cached too, but its state says "failed")
    assert hits and hits.group(1) == hits.group(2) == "9"
    assert re.search(r"Timings: export cached \(built in [\d.]+s, peak [\d.]+ GiB\), graph_passes cached", md)
    text, _ = _html(root)
    assert "cached, time when built" in text and "fill-opacity='0.35'" in text
