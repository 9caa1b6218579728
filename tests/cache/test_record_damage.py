"""Stage records are self-verifying: a record's digest covers its metadata, so a changed value, a
renamed or missing field or bad JSON makes it a miss (rebuilt, reported as a note) and is never
used: not by `build`, `explain`, `cache ls`, `cache gc` or `cache verify`, and never a traceback.
Before, a shape edited 8 -> 9 in a record's meta landed in report.json, and a renamed field was a
KeyError traceback from all five commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cache.conftest import STAGES, build, records, states
from tests.conftest import cache_problems, run_cli
from trtforge.cache.keys import canonical_json

pytestmark = pytest.mark.slow  # starts from a real build


def _export_record(cache: Path) -> Path:
    for path in sorted((cache / "actions").glob("*/*.json")):
        if not path.name.endswith(".key.json") and json.loads(path.read_text())["stage"] == "export":
            return path
    raise AssertionError("no export record")


def _change_value(doc):
    doc["meta"]["inputs"]["x"]["shape"] = [2, 9]  # was [2, 8]


def _rename_field(doc):
    doc["outputz"] = doc.pop("outputs")


def _drop_field(doc):
    del doc["meta"]


DAMAGE = {
    "changed value": _change_value,
    "renamed field": _rename_field,
    "missing field": _drop_field,
    "bad JSON": None,
}


def _rewrite(path: Path, doc: dict, digest: str | None) -> None:
    """The edited document in the record's own format, its old digest kept: only the edit differs."""
    if digest is None:  # a record without a digest (trtforge before records were sealed)
        path.write_text(json.dumps(doc, indent=1, sort_keys=True))
        return
    body = canonical_json({k: v for k, v in doc.items() if k != "digest"})
    path.write_text(body[:-1] + f',"digest":"{digest}"}}')


def damage(cache: Path, kind: str) -> Path:
    path = _export_record(cache)
    if DAMAGE[kind] is None:
        path.write_text(path.read_text()[:-40])
    else:
        doc = json.loads(path.read_text())
        DAMAGE[kind](doc)
        _rewrite(path, doc, doc.get("digest"))
    return path


def no_traceback(r):
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_record_is_a_reported_miss_everywhere(built_project, kind, tmp_path):
    cache = built_project / ".trtforge-cache"
    key = damage(cache, kind).name[:16]

    ls = run_cli("cache", "ls", cwd=built_project)
    no_traceback(ls)
    assert ls.returncode == 0
    assert key not in ls.stdout and "damaged cache record" in ls.stderr
    assert len(ls.stdout.splitlines()) == len(STAGES) - 1 + 2  # the other records, a header and the total

    ex = run_cli("explain", cwd=built_project)
    no_traceback(ex)
    assert ex.returncode == 0
    assert "mlp export: note: damaged cache record" in ex.stdout
    assert "mlp export: will rebuild" in ex.stdout and "mlp export: up to date" not in ex.stdout

    proc, report = build(built_project)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trtforge: note: mlp: damaged cache record" in proc.stderr
    assert states(report)["export"] == "ok"  # rebuilt, not read from the damaged record
    (mod,) = report["modules"]
    assert mod["stages"]["export"]["meta"]["inputs"]["x"]["shape"] == [2, 8]
    assert "outputz" not in _export_record(cache).read_text()

    damage(cache, kind)  # the rebuilt record, damaged again: `cache verify` finds it (in a copy)
    copy = tmp_path / "copy"
    shutil.copytree(cache, copy, symlinks=True)
    verify = run_cli("cache", "verify", "--cache-dir", str(copy), cwd=built_project)
    no_traceback(verify)
    assert verify.returncode == 3, verify.stdout
    assert "damaged record" in verify.stdout and "1 problem(s)" in verify.stdout
    again = run_cli("cache", "verify", "--cache-dir", str(copy), cwd=built_project)
    assert again.returncode == 0, again.stdout  # removed: the next build rewrites it

    gc = run_cli("cache", "gc", "--older-than", "1000d", cwd=built_project)  # and gc drops it
    no_traceback(gc)
    assert gc.returncode == 0, gc.stderr
    assert "removed 1 record(s)" in gc.stdout
    assert cache_problems(cache) == [] and "export" not in {r["stage"] for r in records(cache)}


def test_damaged_index_entry_is_never_a_traceback(built_project):
    """The index (the last key per module and stage) is sealed the same way."""
    index = built_project / ".trtforge-cache" / "index" / "mlp" / "export.json"
    doc = json.loads(index.read_text())
    doc["dco"] = doc.pop("doc")
    index.write_text(json.dumps(doc))
    ex = run_cli("explain", cwd=built_project)
    no_traceback(ex)
    assert ex.returncode == 0 and "mlp export: up to date" in ex.stdout
    proc, report = build(built_project)
    assert proc.returncode == 0 and set(states(report).values()) == {"cached"}, proc.stderr[-2000:]
    assert "doc" in json.loads(index.read_text())  # rewritten whole
