"""`outputs.NAME.valid = "INPUT"` on a pipeline's outputs, as on a module's (verify/valid.py): the
elements where that 0/1 input is 0 (padding) are left out of the pipeline's comparison.

The slow test is a real project: a module whose padded positions overflow FP16 (finite in FP32,
Inf as published: undefined, like a left-padded batch's padded logits) and declare so with its
own `verify.outputs.y.valid`; the pipeline that calls it fails without `valid` (exit 3, the
failure naming the line to write) and publishes with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.pipelines.test_pipelines import write
from trtforge.errors import ManifestError, PipelineError, VerifySetupError
from trtforge.manifest import parse_manifest
from trtforge.pipelines.verdict import check_reference, judge

MANIFEST = """\
[defaults]
precision.rules = []

[modules.pad]
factory = "toy:make_pad_spill"
inputs.x = {{ shape = [2, 8], dtype = "float16", range = [0.1, 0.9] }}
inputs.mask = {{ shape = [2, 8], dtype = "int64", kind = "padding_mask", pad = [0, 3], side = "left" }}
outputs = ["y"]
verify.outputs.y = {{ valid = "mask" }}

[pipelines.padded]
modules = ["pad"]
runner = "runners.chaos:padded"
inputs.x = {{ shape = [2, 8], dtype = "float32", range = [0.1, 0.9] }}
inputs.mask = {{ shape = [2, 8], dtype = "int64", kind = "padding_mask", pad = [0, 3], side = "left" }}
outputs.y = {{ {valid} }}
outputs.y_psnr = {{ metric = "psnr", min_psnr = 30{psnr_valid} }}
"""


def _manifest(valid: str = 'valid = "mask"', psnr_valid: str = ', valid = "mask"') -> str:
    return MANIFEST.format(valid=valid, psnr_valid=psnr_valid)


def test_valid_is_read_like_a_modules_and_written_only_when_set():
    (p,) = parse_manifest(_manifest(), Path("/p/engines.toml")).pipelines
    assert p.outputs["y"] == {"atol": 0.01, "rtol": 0.01, "max_outside": 0.001, "min_cosine": 0.999, "valid": "mask"}
    assert p.outputs["y_psnr"] == {"metric": "psnr", "min_psnr": 30.0, "peak": 0.0, "valid": "mask"}
    (q,) = parse_manifest(_manifest("", ""), Path("/p/engines.toml")).pipelines
    assert "valid" not in q.outputs["y"] and "valid" not in q.outputs["y_psnr"]  # keys of old tables unchanged


@pytest.mark.parametrize(
    ("valid", "message"),
    [
        (
            'valid = "maks"',
            r"pipelines\.padded\.outputs\.y\.valid: 'maks' is not an input of the pipeline; did you mean 'mask'",
        ),
        ('valid = "x"', r"outputs\.y\.valid: input 'x' is float32; valid needs an integer or bool input"),
        ("valid = 1", r"outputs\.y\.valid"),
        ("constant_ok = 2", r"outputs\.y\.constant_ok"),
    ],
)
def test_a_wrong_valid_is_one_line_naming_the_field(valid, message):
    with pytest.raises(ManifestError, match=message) as e:
        parse_manifest(_manifest(valid), Path("/p/engines.toml"))
    assert "\n" not in e.value.one_line()


MASK = np.array([[1, 1, 1, 1], [0, 0, 1, 1]], np.int64)
REF = np.arange(8, dtype=np.float32).reshape(2, 4) + 1.0


def _spilled(value=np.inf):
    out = REF.copy()
    out[MASK == 0] = value
    return out


@pytest.mark.parametrize(
    "checks",
    [
        {"atol": 0.01, "rtol": 0.01, "max_outside": 0.0, "min_cosine": 0.999},
        {"metric": "psnr", "min_psnr": 30.0, "peak": 0.0},
        {"metric": "sequence", "min_match": 1.0},
    ],
)
def test_valid_leaves_padded_positions_out_of_every_check(checks):
    inputs = {"mask": MASK, "x": REF}
    for spilled in (_spilled(), _spilled(-7.0)):
        without = judge("p", {"o": spilled}, {"o": REF}, {"o": checks}, inputs)["o"]
        assert not without["ok"], without
        with_valid = judge("p", {"o": spilled}, {"o": REF}, {"o": {**checks, "valid": "mask"}}, inputs)["o"]
        assert with_valid["ok"] and with_valid["left_out"] == 2 and with_valid["elements"] == 8, with_valid
    # a real position that differs still fails
    wrong = REF.copy()
    wrong[0, 0] = 100.0
    assert not judge("p", {"o": wrong}, {"o": REF}, {"o": {**checks, "valid": "mask"}}, inputs)["o"]["ok"]


def test_the_series_reads_a_modules_valid_and_the_target_gets_it():
    from trtforge.pipelines.harness import Signature, call_error

    (spec,) = parse_manifest(_manifest(), Path("/p/engines.toml")).modules
    sig = Signature.of(spec)
    assert sig.valid == (("y", "mask"),) and Signature.from_json(json.loads(json.dumps(sig.as_json()))) == sig
    keep = sig.keeps({"y": _spilled()}, {"mask": MASK, "x": REF})["y"]
    assert call_error(_spilled(), REF) == {"nonfinite": 2}
    assert call_error(_spilled(), REF, keep) == {"max_abs": 0.0, "rel_l2": 0.0, "rel_err": 0.0}


def test_a_failure_confined_to_padding_names_the_pipeline_setting():
    checks = {"atol": 0.01, "rtol": 0.01, "max_outside": 0.0, "min_cosine": 0.999}
    m = judge("p", {"o": _spilled(-7.0)}, {"o": REF}, {"o": checks}, {"mask": MASK})["o"]
    assert "lie where input 'mask' is 0" in m["reason"] and 'pipelines.p.outputs.o.valid = "mask"' in m["reason"]


def test_the_reference_is_judged_at_the_valid_positions_and_a_mask_must_line_up():
    inputs = {"mask": MASK, "x": REF}
    ref = _spilled(np.nan)  # NaN where no one reads it: not broken with valid
    check_reference("p", {"o": ref}, inputs, {"o": {"valid": "mask"}})
    with pytest.raises(PipelineError, match="output 'o': 2 of 8 values are NaN/Inf"):
        check_reference("p", {"o": ref}, inputs, {"o": {}})
    with pytest.raises(
        VerifySetupError, match=r"pipelines\.p\.outputs\.o\.valid: input 'mask' \[2, 4\] does not line up"
    ):
        judge(
            "p",
            {"o": np.zeros((3, 4))},
            {"o": np.zeros((3, 4))},
            {"o": {"valid": "mask", "metric": "sequence", "min_match": 1.0}},
            inputs,
        )


def _report(root: Path) -> dict:
    return json.loads((root / "engines" / "report.json").read_text())


class FP16EngineStandIn:
    """TEST DOUBLE for verify.engine_session.EngineSession (no engine runs without a GPU, and
    TensorRT-RTX not on Hopper): computes the toy PadSpill module in FP16, as its engine does
    (Inf at the padded positions); `off` moves one real position, as a drifting engine would."""

    off = 0.0

    def __init__(self, engine_path: Path, backend: str, profiles=None):
        assert engine_path.is_file() and backend, engine_path  # the published engine is what it stands in for

    def __call__(self, feeds: dict) -> dict:
        x = feeds["x"].astype(np.float16)
        s = np.float16(1) + (np.float16(1) - feeds["mask"].astype(np.float16)) * np.float16(999)
        with np.errstate(over="ignore"):
            y = x * s * s
        y[0, 0] += np.float16(self.off)
        return {"y": y}


def _on_target(root: Path, monkeypatch, off: float = 0.0, drop_valid: bool = False) -> dict:
    """trtforge verify's pipeline half (pipelines/target.py) with the engines run by the stand-in."""
    from trtforge.pipelines.target import check_on_target

    monkeypatch.setattr("trtforge.verify.engine_check.why_not_runnable", lambda side: None)
    monkeypatch.setattr("trtforge.verify.engine_session.EngineSession", FP16EngineStandIn)
    monkeypatch.setattr(FP16EngineStandIn, "off", off)
    monkeypatch.chdir(root)  # the runner is imported from the current folder
    folder = root / "engines"
    index = json.loads((folder / "index.json").read_text())
    entry = index["pipelines"]["padded"]
    if drop_valid:  # the sidecar as a build without valid would have written it
        side_path = folder / entry["sidecar"]
        side = json.loads(side_path.read_text())
        for checks in side["outputs"].values():
            checks.pop("valid")
        side_path.write_text(json.dumps(side))
    return check_on_target(folder, "padded", entry, index["modules"], False)


@pytest.mark.slow
def test_a_padded_pipeline_passes_only_with_valid(tmp_path, monkeypatch):
    root = write(tmp_path / "p", manifest=_manifest("", ""))
    r = run_cli("build", "engines.toml", cwd=root)
    assert r.returncode == 3, r.stderr[-3000:]
    assert "pipeline 'padded' failed: y: " in r.stderr and "values are NaN/Inf" in r.stderr, r.stderr[-3000:]
    assert 'pipelines.padded.outputs.y.valid = "mask"' in r.stderr, r.stderr[-3000:]
    (pipe,) = _report(root)["pipelines"]
    assert not pipe["outputs"]["y"]["ok"] and not pipe["outputs"]["y_psnr"]["ok"]
    # the per-call series compares what the module's own check compares (its verify.outputs.y.valid)
    assert pipe["series"]["pad"][0]["outputs"]["y"] == {"max_abs": 0.0, "rel_l2": 0.0, "rel_err": 0.0}
    (mod,) = _report(root)["modules"]
    assert mod["stages"]["verify"]["meta"]["passed"] is True  # the module's own check passed (its valid)
    assert (
        not (root / "engines" / "index.json").exists()
        or not json.loads((root / "engines" / "index.json").read_text())["modules"]
    )

    write(root, manifest=_manifest())
    r = run_cli("build", "engines.toml", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    (pipe,) = _report(root)["pipelines"]
    assert pipe["state"] == "ok" and pipe["outputs"]["y"]["ok"] and pipe["outputs"]["y_psnr"]["ok"]
    assert pipe["outputs"]["y"]["left_out"] == 3 and pipe["outputs"]["y"]["elements"] == 16  # row 1 padded by 3
    index = json.loads((root / "engines" / "index.json").read_text())
    assert set(index["modules"]) == {"pad"} and "padded" in index["pipelines"]
    side = json.loads((root / "engines" / "pipelines" / "padded.json").read_text())
    assert side["outputs"]["y"]["valid"] == "mask"  # the target re-runs it with the same checks

    # on the target, with the engines (stood in for: no GPU here), the same checks
    assert _on_target(root, monkeypatch)["status"] == "ok"
    drifted = _on_target(root, monkeypatch, off=1.0)
    assert drifted["status"] == "failed" and drifted["reason"].startswith("y: "), drifted
    no_valid = _on_target(root, monkeypatch, drop_valid=True)
    assert no_valid["status"] == "failed" and "values are NaN/Inf" in no_valid["reason"], no_valid
