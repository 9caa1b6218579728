"""Issue #29's first day, walked again: the rows that still fell short, through the console script
on the two-target build test_grammar.py makes (shared, built once per session):
- `inspect MODULE` without --target names the target once, as [targets] names it, at the top;
- a one-target folder copied alone names the sidecar it read, not an index.json it lacks;
- `cache ls --json` lists release pointers under their module, not "-";
- REPORT.md shows what the targets share once per module;
- a dynamic batch fed from a data file builds (the file serves every profile corner);
- `explain --check` naming several entries says "rebuilds them", one entry "rebuilds it"."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_grammar import MANIFEST, TEXT, _make, _ok
from tests.conftest import built_once
from tests.errors.conftest import HERE as ERRORS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """test_grammar's project (the same shared folder). Read only."""
    return built_once(tmp_path_factory, "cli-targets", _make)


def test_inspect_without_target_names_it_once_at_the_top(project):
    lines = _ok("inspect", "tiny", "-m", MANIFEST, cwd=project).stdout.splitlines()
    assert lines[1].startswith("  versions: ") and lines[2].startswith("  note: target "), lines
    chosen = lines[2].split()[2]  # "  note: target consumer (the last built); ..."
    assert chosen in ("ampere_ada", "consumer") and f"target {chosen}," in lines[1] + ",", lines
    assert "target rtx-" not in "\n".join(lines)  # not the backend's own name for it as well


def test_a_corrupt_engine_in_a_target_folder_alone_names_its_sidecar(project, tmp_path):
    alone = tmp_path / "ship" / "consumer"
    shutil.copytree(project / "engines" / "consumer", alone)
    engine = alone / "tiny.engine"
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.write_bytes(bytes(data))
    bad = _ok("verify", str(alone), cwd=tmp_path, code=3)
    (line,) = [ln for ln in bad.stderr.splitlines() if "does not match its digest" in ln]
    assert "does not match its digest in its sidecar tiny.json (corrupt or replaced)" in line
    assert "index.json" not in line


def test_cache_ls_names_the_module_of_release_pointers(project):
    doc = json.loads(_ok("cache", "ls", "-m", MANIFEST, "--json", cwd=project).stdout)
    releases = [r for r in doc["records"] if r["stage"] == "release"]
    assert len(releases) == 2 and {r["module"] for r in releases} == {"tiny"}, releases
    assert [m["name"] for m in doc["modules"]] == ["tiny"]


def test_report_md_shows_what_targets_share_once(project):
    md = (project / "engines" / "REPORT.md").read_text()
    assert md.count("## tiny\n") == 1 and "### ampere_ada/tiny" in md and "### consumer/tiny" in md
    assert md.count("### Export, passes and precision (shared by every target)") == 1
    for shared in ("Precision (", "| legalize_dtypes |", "| precision_rules | ok |"):
        assert md.count(shared) == 1, shared
    # the export check's row: "ok", or "not evaluated" once the final check passed (issue 25)
    assert len(re.findall(r"^\| export \| (?:ok|not evaluated) \|", md, re.M)) == 1
    assert md.count("Build: ") == 2 and md.count("| engine | ") == 2  # each target's own


def test_a_dynamic_batch_from_a_data_file_builds(tmp_path):
    shutil.copy(ERRORS / "bad_models.py", tmp_path / "bad_models.py")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32))
    (tmp_path / "engines.toml").write_text(
        '[modules.tiny]\nfactory = "bad_models:make_tiny"\n'
        'inputs.x = { shape = ["batch", 3, 8, 8], file = "x.npy" }\n'
        "dims.batch = { min = 1, opt = 2, max = 4 }\n"
    )
    r = _ok("build", "-q", cwd=tmp_path)  # 3 rows: cut to 1 and 2, repeated to 4
    assert len(list((tmp_path / "engines").rglob("tiny.engine"))) == 1, r.stderr


def test_explain_check_on_several_entries_says_rebuilds_them(tmp_path):
    shutil.copy(ERRORS / "bad_models.py", tmp_path / "bad_models.py")
    (tmp_path / MANIFEST).write_text(TEXT)  # two targets, nothing built: both entries would build
    both = _ok("explain", "--check", "-m", MANIFEST, cwd=tmp_path, code=4)
    assert both.stderr == "trtforge: not up to date: ampere_ada/tiny, consumer/tiny; `trtforge build` rebuilds them\n"
    one = _ok("explain", "--check", "-m", MANIFEST, "--target", "consumer", cwd=tmp_path, code=4)
    assert one.stderr == "trtforge: not up to date: consumer/tiny; `trtforge build` rebuilds it\n"
