"""CI gates on a real build of the example manifest: `explain --check`, `build --junit`,
`verify --json --module`, JUnit time attributes, `cache ls`, environment overrides."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import run_cli
from tests.errors.conftest import HERE as ERRORS

pytestmark = pytest.mark.slow


def _beside(root, name: str, extra: str) -> str:
    """Another manifest beside engines.toml, sharing its cache (the project's must stay as built)."""
    text = (
        (root / "engines.toml")
        .read_text()
        .replace('factory = "examples.vit:make_vit"', f'factory = "examples.vit:make_vit"\n{extra}', 1)
    )
    (root / name).write_text(f'[defaults]\noutput_dir = "out-{name[:-5]}"\n' + text.replace("[defaults]\n", "", 1))
    return name


def test_explain_check_exits_0_up_to_date_4_stale_2_cannot_plan(built_examples):
    root, _ = built_examples
    ok = run_cli("explain", "--check", cwd=root)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    stale = run_cli("explain", "--check", _beside(root, "stale.toml", "build = { optimization_level = 2 }"), cwd=root)
    assert stale.returncode == 4, stale.stdout + stale.stderr  # 1 is a bug's
    assert "vit build: will rebuild; changed:" in stale.stdout and "not up to date: vit" in stale.stderr
    assert "trtforge: error" not in stale.stderr
    assert run_cli("explain", "stale.toml", cwd=root).returncode == 0  # without --check: a report
    unplannable = _beside(root, "noglob.toml", 'depends = ["weights/*.pt"]')
    for args in (("--check",), ()):  # "cannot plan" is a user mistake either way: never exit 0
        r = run_cli("explain", *args, unplannable, cwd=root)
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.startswith("trtforge: error: vit export: cannot plan:") and "weights/*.pt" in r.stderr


def test_build_junit_has_one_timed_case_per_module(built_examples, tmp_path):
    root, _ = built_examples
    junit = tmp_path / "reports" / "build.xml"
    r = run_cli("build", "--quiet", "--junit", str(junit), cwd=root)
    assert r.returncode == 0, r.stderr
    suite = ET.parse(junit).getroot()
    cases = suite.findall("testcase")
    names = ["vit", "decoder", "nchw_net", "text_encoder", "unet", "vae_decoder", "lm_prefill", "lm_decode"]
    assert [c.get("name") for c in cases] == names
    assert all(c.get("classname") == "trtforge.build" and float(c.get("time")) >= 0 for c in cases)
    assert suite.get("tests") == str(len(names)) and suite.get("failures") == "0" and float(suite.get("time")) >= 0


def test_verify_json_module_and_timed_junit(built_examples, tmp_path):
    root, _ = built_examples
    r = run_cli("verify", "engines", "--json", "--module", "vit", "--junit", str(tmp_path / "v.xml"), cwd=root)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is the JSON alone
    assert doc["ok"] is True and doc["failed"] == 0
    assert [x["module"] for x in doc["results"]] == ["vit"]
    assert doc["results"][0]["status"] in ("ok", "not run") and doc["results"][0]["seconds"] >= 0
    (case,) = ET.parse(tmp_path / "v.xml").getroot().findall("testcase")
    assert case.get("name") == "vit" and float(case.get("time")) >= 0
    bad = run_cli("verify", "engines", "--module", "vitt", cwd=root)
    assert bad.returncode == 2 and "no published engine for module 'vitt'" in bad.stderr
    assert "did you mean 'vit'" in bad.stderr


def test_cache_ls_has_a_header_module_names_and_a_total(built_examples):
    root, _ = built_examples
    r = run_cli("cache", "ls", cwd=root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].split() == ["KEY", "MODULE", "STAGE", "SIZE", "AGE"]
    rows = [line.split() for line in lines[1:-1]]
    assert len(rows) >= 15  # 3 modules x 5 stages
    assert {row[1] for row in rows} >= {"vit", "decoder", "nchw_net"}
    assert {(row[1], row[2]) for row in rows} >= {("vit", "build"), ("decoder", "export")}
    assert lines[-1].startswith(f"{len(rows)} record(s), ") and lines[-1].endswith("blob(s)")


def test_environment_overrides_backend_jobs_and_output_dir(built_examples, tmp_path):
    root, _ = built_examples
    bad_backend = run_cli("build", cwd=root, env={"TRTFORGE_BACKEND": "tensorrt_rtx"})
    assert bad_backend.returncode == 2 and "TRTFORGE_BACKEND" in run_cli("build", "--help", cwd=root).stdout
    assert "'tensorrt_rtx' is not one of" in bad_backend.stderr
    bad_jobs = run_cli("build", cwd=root, env={"TRTFORGE_JOBS": "0"})
    assert bad_jobs.returncode == 2 and "--jobs" in bad_jobs.stderr
    out = tmp_path / "elsewhere"
    r = run_cli("build", "--quiet", "--module", "decoder", cwd=root, env={"TRTFORGE_OUTPUT_DIR": str(out)})
    assert r.returncode == 0, r.stderr
    assert (out / "index.json").is_file() and list(out.glob("*/decoder.engine"))
    refused = run_cli("build", "--quiet", cwd=root, env={"TRTFORGE_OUTPUT_DIR": str(root)})
    assert refused.returncode == 2 and "manifest's own folder" in refused.stderr


def test_build_junit_reports_a_failing_module_with_its_stage(tmp_path):
    shutil.copy(ERRORS / "bad_models.py", tmp_path / "bad_models.py")
    (tmp_path / "engines.toml").write_text(
        '[modules.odd]\nfactory = "bad_models:make_raises"\n'
        "factory_args = { depth = 3 }\ninputs.x = { shape = [1, 3, 8, 8] }\n"
    )
    r = run_cli("build", "--quiet", "--junit", "junit.xml", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    (case,) = suite.findall("testcase")
    assert suite.get("failures") == "1" and case.get("name") == "odd" and float(case.get("time")) > 0
    assert case.find("failure").get("message").startswith("export: ") and "depth must be even" in case.find(
        "failure"
    ).get("message")
