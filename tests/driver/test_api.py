"""The Python API (trtforge.build / explain / load_manifest), in-process, on a real tiny module:
the CLI calls the same functions, so this is also the driver's lifecycle without a subprocess."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import trtforge
from trtforge.driver.explain import Verdict
from trtforge.driver.stages import STAGE_NAMES, stage_table
from trtforge.errors import ManifestError

HERE = Path(__file__).resolve().parent
MANIFEST = """
[modules.tiny]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 8, 8] }
"""


@pytest.mark.slow
def test_build_explain_and_rebuild_through_the_api(tmp_path):
    shutil.copy(HERE.parent / "errors" / "bad_models.py", tmp_path / "bad_models.py")
    (tmp_path / "engines.toml").write_text(MANIFEST)
    manifest = trtforge.load_manifest(tmp_path / "engines.toml")
    seen = []
    outcome = trtforge.build(manifest, on_result=lambda r: seen.append(r.name))
    assert outcome.ok and outcome.exit_code == 0, [e.one_line() for e in outcome.errors]
    (result,) = outcome.results
    assert seen == ["tiny"] and result.ok
    assert [s for s, st in result.stages.items() if st.state == "ok"] == list(STAGE_NAMES)
    assert any(p.endswith("tiny.engine") for p in result.published)
    assert (tmp_path / "engines" / "REPORT.md").is_file() and outcome.report.is_file()
    verdicts = trtforge.explain(manifest)
    assert all(isinstance(v, Verdict) and v.state == "up to date" and str(v).endswith(")") for v in verdicts)
    (tmp_path / "engines.toml").write_text(MANIFEST + "verify.atol = 0.5\n")
    changed = {v.stage: v for v in trtforge.explain(tmp_path / "engines.toml") if v.state != "up to date"}
    assert set(changed) == {"verify"} and changed["verify"].state == "rebuild"
    assert any(c.startswith("settings.atol: 0.01 -> 0.5") or "atol" in c for c in changed["verify"].changes)
    again = trtforge.build(manifest)
    assert {st.state for st in again.results[0].stages.values()} == {"cached"}
    assert again.results[0].published == result.published
    # printing an outcome (a notebook's habit) shows results, not every key's thousands of file digests
    assert "deps" not in repr(outcome) and len(repr(outcome)) < 20_000, len(repr(outcome))


def test_a_user_mistake_raises_one_typed_error(tmp_path):
    (tmp_path / "engines.toml").write_text(MANIFEST)
    with pytest.raises(ManifestError, match="no module 'tinny'.*did you mean 'tiny'"):
        trtforge.build(tmp_path / "engines.toml", modules=["tinny"])


def test_the_stage_table_is_the_one_order_and_can_end_early():
    assert [s.stage.name for s in stage_table()] == list(STAGE_NAMES)
    assert [s.stage.name for s in stage_table(until="graph_passes")] == ["export", "graph_passes"]
    for step in stage_table():  # a stage reads only stages before it
        assert all(STAGE_NAMES.index(r) < STAGE_NAMES.index(step.stage.name) for r in step.reads)
    with pytest.raises(ValueError, match="no stage 'engine'"):
        stage_table(until="engine")


AFTER_TORCH = """
import torch, trtforge
a = torch.randn(512, 512)
for _ in range(8):
    a @ a  # torch's OpenMP pool now runs in this process
torch.nn.Conv2d(3, 8, 3)(torch.randn(4, 3, 64, 64))
outcome = trtforge.build("engines.toml")
print("OK" if outcome.ok else [e.one_line() for e in outcome.errors])
"""
CONV = """
import torch
from torch import nn


def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
"""


@pytest.mark.slow
def test_build_from_a_process_that_ran_torch_does_not_hang(tmp_path):
    """trtforge.build from a notebook-like process whose torch has run parallel ops: each stage runs
    in a forked child, and torch's OpenMP threads do not survive a fork; the export used to wait
    for them forever. Its own process, so a hang is a timeout failure, not a stuck suite."""
    import subprocess
    import sys

    (tmp_path / "convs.py").write_text(CONV)
    (tmp_path / "engines.toml").write_text(
        '[modules.conv]\nfactory = "convs:make"\ninputs.x = { shape = [2, 3, 64, 64] }\n'
    )
    (tmp_path / "run.py").write_text(AFTER_TORCH)
    r = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr[-2000:]


def test_build_and_explain_have_typed_signatures_that_match_the_driver():
    """trtforge.build shows every option (no **options) with the driver's defaults; explain returns
    Verdict dataclasses (issue 29)."""
    import dataclasses
    import inspect
    import typing

    from trtforge.driver import api
    from trtforge.driver.request import BuildRequest

    def defaults(function):
        ours = inspect.signature(function).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in ours.values()), function
        return {n: p.default for n, p in ours.items()}

    assert defaults(trtforge.explain) == defaults(api.explain_verdicts)
    # build's options are the request's fields, with its defaults (issue 26: one BuildRequest)
    request = {f.name: f.default for f in dataclasses.fields(BuildRequest)}
    public = defaults(trtforge.build)
    assert {n: public[n] for n in request} == request
    assert set(public) - set(request) == {"manifest", "progress", "on_result", "on_note"}
    assert public["manifest"] == inspect.signature(api.build).parameters["manifest"].default
    from trtforge.processes.progress import Progress

    hints = typing.get_type_hints(trtforge.build, globalns={**vars(api), "Progress": Progress})
    assert hints["return"] is api.BuildOutcome and hints["jobs"] is int
    assert dataclasses.is_dataclass(Verdict) and "changes" in {f.name for f in dataclasses.fields(Verdict)}


def test_inspect_and_export_onnx_have_typed_signatures_that_match_the_driver():
    """trtforge.inspect and trtforge.export_onnx show their options (no **options), with the
    driver's names, kinds and defaults, and typed results (issue 29)."""
    import inspect
    import typing

    from trtforge.driver import api
    from trtforge.driver.inspect import Inspection

    for public, driver in ((trtforge.inspect, api.inspect), (trtforge.export_onnx, api.export_onnx)):
        ours, theirs = inspect.signature(public).parameters, inspect.signature(driver).parameters
        assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in ours.values()), public
        assert [(p.kind, p.default) for p in ours.values()] == [(p.kind, p.default) for p in theirs.values()]
        assert list(ours)[1:] == list(theirs)[1:]  # the first: `target` / `module` (the driver: module_name)
    names = {**vars(api), "Inspection": Inspection}
    assert typing.get_type_hints(trtforge.inspect, globalns=names)["return"] is Inspection
    assert typing.get_type_hints(trtforge.export_onnx, globalns=names)["return"] == list[Path]
    assert typing.get_type_hints(trtforge.inspect, globalns=names)["on_target"] == str | None


def test_explain_returns_verdicts_without_building(tmp_path):
    shutil.copy(HERE.parent / "errors" / "bad_models.py", tmp_path / "bad_models.py")
    (tmp_path / "engines.toml").write_text(MANIFEST)
    verdicts = trtforge.explain(tmp_path / "engines.toml")
    assert [v.stage for v in verdicts][:1] == ["export"] and all(v.module == "tiny" for v in verdicts)
    assert verdicts[0].state == "build" and str(verdicts[0]) == "tiny export: will build (never built with this cache)"
