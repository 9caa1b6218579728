"""`trtforge verify` on a copy of the engines folder in another directory, and
`--require-engine-check` on `build` and `verify`: an engine that cannot run here is "not run"
(exit 0) or a failure (exit 3); a corrupted or missing engine fails without being deserialised;
the JUnit XML parses and counts what happened."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import has_gpu, run_cli

pytestmark = pytest.mark.slow  # the console script on real builds


def engine_runs_here() -> bool:
    """True on a GPU TensorRT-RTX runs on (not Hopper): there the engine check really runs."""
    from trtforge import backends as be

    gpus = be.gpus()
    return bool(gpus) and gpus[0].compute_capability in ("8.0", "8.6", "8.9", "12.0")


@pytest.fixture(scope="module")
def project(attn_built, tmp_path_factory):
    """The attention module (ATTN_TOPK_MANIFEST) built and published, copied: tests here change it."""
    root = tmp_path_factory.mktemp("predeploy") / "proj"
    shutil.copytree(attn_built, root, symlinks=True)
    return root


@pytest.fixture
def copied(project, tmp_path):
    """The published engines folder copied to an unrelated directory (no manifest, no cache)."""
    dest = tmp_path / "elsewhere" / "engines"
    shutil.copytree(project / "engines", dest)
    return dest


def _junit(path: Path) -> ET.Element:
    suite = ET.parse(path).getroot()  # well-formed or this raises
    assert suite.tag == "testsuite"
    return suite


@pytest.mark.skipif(engine_runs_here(), reason="the engine runs on this GPU")
def test_verify_copied_folder_reports_not_run_and_exits_0(copied, tmp_path):
    proc = run_cli("verify", str(copied), "--junit", str(tmp_path / "out" / "junit.xml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "attn: not run: engine not run here: " in proc.stdout
    if not has_gpu():
        assert "no NVIDIA GPU" in proc.stdout
    suite = _junit(tmp_path / "out" / "junit.xml")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("1", "0", "1")
    assert "engine not run here" in suite.find("testcase/skipped").get("message")


@pytest.mark.skipif(engine_runs_here(), reason="the engine runs on this GPU")
def test_verify_require_engine_check_fails_with_exit_3(copied, tmp_path):
    proc = run_cli("verify", str(copied), "--require-engine-check", "--junit", str(tmp_path / "j.xml"), cwd=tmp_path)
    assert proc.returncode == 3
    assert "attn: failed: engine not run here: " in proc.stdout
    suite = _junit(tmp_path / "j.xml")
    assert (suite.get("failures"), suite.get("skipped")) == ("1", "0")


def test_verify_corrupted_engine_fails_without_deserialising(copied, tmp_path):
    engine = next(copied.rglob("attn.engine"))
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.write_bytes(bytes(data))
    proc = run_cli("verify", str(copied), "--junit", str(tmp_path / "j.xml"), cwd=tmp_path)
    assert proc.returncode == 3
    assert "does not match its digest in index.json (corrupt or replaced); not deserialised" in proc.stdout
    failure = _junit(tmp_path / "j.xml").find("testcase/failure")
    assert failure is not None and "not deserialised" in failure.get("message")


def test_verify_missing_engine_fails(copied, tmp_path):
    next(copied.rglob("attn.engine")).unlink()
    proc = run_cli("verify", str(copied), cwd=tmp_path)
    assert proc.returncode == 3
    assert "attn.engine is missing" in proc.stdout


def test_verify_folder_without_engines_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("verify", str(tmp_path / "empty"), cwd=tmp_path)
    assert proc.returncode == 2 and "no published engines" in proc.stderr  # a user error


def test_bundle_carries_the_random_input_sets(copied, tmp_path):
    side = json.loads(next(copied.rglob("attn.json")).read_text())
    assert {"attn.inputs.r1.npz", "attn.reference.r1.npz"} <= set(side["files"])
    next(copied.rglob("attn.reference.r1.npz")).unlink()
    proc = run_cli("verify", str(copied), cwd=tmp_path)
    assert proc.returncode == 3 and "attn.reference.r1.npz is missing" in proc.stdout


def test_sidecar_carries_task_metric_and_verification(project):
    side = json.loads(next((project / "engines").rglob("attn.json")).read_text())
    assert side["tolerance"]["y"]["metric"] == "topk" and side["tolerance"]["y"]["k"] == 3
    assert side["verification"]["precision_rules"]["outputs"]["y"]["task"]["ok"] is True
    assert side["verification"]["engine"]["status"] in ("not run", "ok")


@pytest.mark.skipif(engine_runs_here(), reason="the engine runs on this GPU")
def test_build_require_engine_check_fails_and_withdraws_the_engine(project):
    proc = run_cli("build", "engines.toml", "--require-engine-check", cwd=project)
    assert proc.returncode == 3
    assert "engine check required but engine not run here" in proc.stderr
    assert not list((project / "engines").rglob("attn.engine"))  # withdrawn, not left stale
    report = json.loads((project / "engines" / "report.json").read_text())
    assert report["modules"][0]["stages"]["verify"]["state"] == "failed"
    assert "engine check required" in (project / "engines" / "REPORT.md").read_text()
    # without the flag the same cached build passes and publishes again
    assert run_cli("build", "engines.toml", cwd=project).returncode == 0
    assert list((project / "engines").rglob("attn.engine"))
