"""engines/ is a function of the manifest and the last build, and `trtforge verify` trusts nothing
beyond engines/index.json's digests. Through the console script: a module that fails in any way is
withdrawn; a module dropped from the manifest is removed; files trtforge did not write are refused,
never deleted; `build --module X` merges into the report; verify fails on a missing, empty or
damaged sidecar, an unlisted file, a listed file missing, a path that leaves the folder; one
module's publish never deletes another's files (a module named `a.inputs.r1` beside `a`)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.cache.conftest import build
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # real builds

TWO = """\
[defaults]
precision.rules = []

[modules.mlp]
factory = "tinymods.mlp:make_mlp"
factory_args = { width = 16 }
inputs.x = { shape = [2, 8], dtype = "float16" }
outputs = ["y"]

[modules.wide]
factory = "tinymods.mlp:make_mlp"
factory_args = { width = 24 }
inputs.x = { shape = [2, 8], dtype = "float16" }
outputs = ["y"]
"""


def index(root: Path) -> dict:
    path = root / "engines" / "index.json"
    return json.loads(path.read_text()) if path.exists() else {"modules": {}, "pending": {}}


def engine_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root / "engines").as_posix()
        for p in (root / "engines").rglob("*")
        if p.is_file() and p.parent != root / "engines"
    )


def verify(root: Path, folder: str = "engines"):
    return run_cli("verify", folder, cwd=root)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_index_lists_exactly_the_published_set(built_project):
    idx = index(built_project)
    assert set(idx["modules"]) == {"mlp"} and idx["pending"] == {}
    files = idx["modules"]["mlp"]["files"]
    assert sorted(files) == engine_files(built_project)
    for rel, digest in files.items():
        assert sha(built_project / "engines" / rel) == digest
    assert verify(built_project).returncode == 0


def test_failed_export_withdraws_the_published_engine(built_project):
    """Exit 2 (a factory argument the factory does not take) withdraws the old engine too."""
    toml = built_project / "engines.toml"
    toml.write_text(toml.read_text().replace("width = 16", "width = 16, depth = 3"))
    proc, report = build(built_project)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert engine_files(built_project) == []
    assert index(built_project)["modules"] == {}
    assert report["modules"][0]["published"] == [] and not report["modules"][0]["ok"]
    r = verify(built_project)
    assert r.returncode == 2 and "index.json lists none" in r.stderr  # nothing left to pass


def test_removed_module_is_pruned_and_module_build_merges_report(republish_project):
    root = republish_project  # both modules' stages are cache hits: this is about publishing
    (root / "engines.toml").write_text(TWO)
    proc, _ = build(root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [f for f in engine_files(root) if f.endswith("wide.engine")]
    proc, _ = build(root, "--module", "mlp")  # a partial build keeps `wide` in every report
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((root / "engines" / "report.json").read_text())
    assert [m["name"] for m in report["modules"]] == ["mlp", "wide"] and report["modules_built"] == ["mlp"]
    assert "## wide" in (root / "engines" / "REPORT.md").read_text()
    assert "<h2 id='module-wide'>wide</h2>" in (root / "engines" / "report.html").read_text()
    (root / "engines.toml").write_text(TWO.split("[modules.wide]")[0])
    proc, _ = build(root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [f for f in engine_files(root) if "wide" in f]
    assert "wide: no longer in the manifest" in proc.stderr
    assert set(index(root)["modules"]) == {"mlp"}
    report = json.loads((root / "engines" / "report.json").read_text())
    assert [m["name"] for m in report["modules"]] == ["mlp"]
    assert verify(root).returncode == 0


def test_foreign_files_are_refused_and_never_deleted(built_project):
    notes = built_project / "engines" / "notes.txt"
    notes.write_text("mine")
    stray = next((built_project / "engines").glob("*/")) / "old.engine"
    stray.write_bytes(b"not trtforge's")
    proc, _ = build(built_project)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("trtforge: error:")]
    assert len(errors) == 1 and "notes.txt" in errors[0] and "--allow-foreign-files" in errors[0], proc.stderr
    proc, _ = build(built_project, "--allow-foreign-files")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert notes.read_text() == "mine" and stray.read_bytes() == b"not trtforge's"
    # the manifest key says the same for every run
    toml = built_project / "engines.toml"
    toml.write_text(toml.read_text().replace("[defaults]", "[defaults]\nallow_foreign_files = true"))
    proc, _ = build(built_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = verify(built_project)  # but an engines folder with them is not what was published
    assert r.returncode == 3 and "notes.txt is not listed in index.json" in r.stdout
    assert "old.engine is not listed in index.json" in r.stdout


@pytest.fixture
def copied(built_project, tmp_path) -> tuple[Path, Path]:
    """(the copied engines folder, its target folder)."""
    dest = tmp_path / "copy" / "engines"
    shutil.copytree(built_project / "engines", dest)
    return dest, next(dest.glob("*/"))


def _reindex(folder: Path, name: str = "mlp") -> None:
    """Make index.json agree with the files on disk again, as a tamperer would."""
    if not (folder / "index.json").exists():
        return
    idx = json.loads((folder / "index.json").read_text())
    for rel in idx["modules"][name]["files"]:
        if (folder / rel).exists():
            idx["modules"][name]["files"][rel] = sha(folder / rel)
    (folder / "index.json").write_text(json.dumps(idx))


@pytest.mark.parametrize("damage", ["missing", "empty", "damaged", "not_a_sidecar"])
def test_verify_fails_on_an_engine_without_a_valid_sidecar(copied, damage):
    folder, target = copied
    side = target / "mlp.json"
    if damage == "missing":
        side.unlink()
    else:
        side.write_text({"empty": "", "damaged": '{"module": "mlp", "fi', "not_a_sidecar": "{}"}[damage])
        _reindex(folder)  # even with the digest made to match, the sidecar itself is checked
    r = run_cli("verify", str(folder), cwd=folder.parent)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "mlp.json" in r.stdout and "mlp: failed" in r.stdout
    assert ("is missing" if damage == "missing" else "is damaged") in r.stdout


def test_verify_fails_on_unlisted_and_missing_files(copied):
    folder, target = copied
    shutil.copy(target / "mlp.engine", target / "other.engine")  # an engine nobody vouches for
    r = run_cli("verify", str(folder), cwd=folder.parent)
    assert r.returncode == 3 and "other.engine is not listed in index.json" in r.stdout
    (target / "other.engine").unlink()
    (target / "mlp.reference.npz").unlink()
    r = run_cli("verify", str(folder), cwd=folder.parent)
    assert r.returncode == 3 and "mlp.reference.npz is missing" in r.stdout
    (folder / "index.json").unlink()
    r = run_cli("verify", str(folder), cwd=folder.parent)
    assert r.returncode == 3 and "index.json is missing" in r.stdout


def test_verify_refuses_paths_that_leave_the_folder(copied, tmp_path):
    folder, target = copied
    side = json.loads((target / "mlp.json").read_text())
    side["module"] = "../../.."
    (target / "mlp.json").write_text(json.dumps(side))
    _reindex(folder)
    r = run_cli("verify", str(folder), cwd=folder.parent)
    assert r.returncode == 3 and "mlp.json names module '../../..'" in r.stdout, r.stdout
    # an index naming a file outside the folder: never opened
    outside = tmp_path / "copy" / "evil.engine"
    outside.write_bytes(b"x")
    idx = json.loads((folder / "index.json").read_text())
    idx["modules"]["mlp"]["files"]["../evil.engine"] = sha(outside)
    (folder / "index.json").write_text(json.dumps(idx))
    r = run_cli("verify", str(folder), cwd=folder.parent)
    assert r.returncode == 3 and "'../evil.engine' is not a path inside the folder" in r.stdout, r.stdout


def test_one_module_never_deletes_another_modules_files(built_project):
    """`a` with a random input set publishes a.inputs.r1.npz; a module named `a.inputs.r1`
    publishes a.inputs.r1.inputs.npz. A glob over `a.inputs.r*.npz` once deleted the latter."""
    root = built_project  # `a.inputs.r1` is the built mlp (cache hits); `a` is built
    mod = (
        '[modules.{name}]\nfactory = "tinymods.mlp:make_mlp"\nfactory_args = {{ width = 16 }}\n'
        'inputs.x = {{ shape = [2, 8], dtype = "float16" }}\noutputs = ["y"]\n'
    )
    (root / "engines.toml").write_text(
        "[defaults]\nprecision.rules = []\n\n"
        + mod.format(name='"a.inputs.r1"')
        + "\n"
        + mod.format(name="a")
        + "verify.random_inputs = 1\n"
    )
    proc, _ = build(root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {f.rsplit("/", 1)[1] for f in engine_files(root)}
    assert {"a.inputs.r1.npz", "a.inputs.r1.inputs.npz", "a.inputs.r1.engine"} <= names
    r = verify(root)
    assert r.returncode == 0, r.stdout + r.stderr


def test_failed_export_log_does_not_follow_a_planted_symlink(built_project, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim_dir = tmp_path / "victim_dir"
    victim_dir.mkdir()
    logs = built_project / ".trtforge-cache" / "logs" / "mlp"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "export.log").unlink(missing_ok=True)
    (logs / "export.log").symlink_to(victim)
    toml = built_project / "engines.toml"
    toml.write_text(toml.read_text().replace("width = 16", "width = 16, depth = 3"))
    proc, _ = build(built_project)
    assert proc.returncode == 2
    assert victim.read_text() == "precious"
    assert (logs / "export.log").is_file() and not (logs / "export.log").is_symlink()
    # a link planted for the module's folder is not written through either
    shutil.rmtree(logs)
    logs.symlink_to(victim_dir)
    proc, _ = build(built_project)
    assert proc.returncode == 2
    assert list(victim_dir.iterdir()) == []


def test_reports_say_where_they_came_from(built_project):
    report = json.loads((built_project / "engines" / "report.json").read_text())
    assert report["trtforge"] == run_cli("--version", cwd=built_project).stdout.split()[-1]
    assert report["backend"] == "tensorrt-rtx" and report["backend_version"]
    assert report["manifest"] == {"path": "../engines.toml", "sha256": sha(built_project / "engines.toml")}
    assert report["gpu"] and report["started"].endswith("Z") and report["duration_s"] > 0
    assert report["ok"] is True
    published = report["modules"][0]["published"]
    assert published and all(
        not p.startswith("/") and (built_project / "engines" / p).is_file() for p in published
    )  # relative to engines/
    html = (built_project / "engines" / "report.html").read_text()
    assert report["manifest"]["sha256"] in html and "PASSED" in html and report["started"] in html
    assert str(built_project) not in html and str(built_project) not in json.dumps(report)


def test_version_and_python_m(tmp_path):
    import subprocess
    import sys

    r = run_cli("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("trtforge ")
    m = subprocess.run([sys.executable, "-m", "trtforge", "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert m.returncode == 0 and m.stdout == r.stdout
    m = subprocess.run(
        [sys.executable, "-m", "trtforge", "verify", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert m.returncode == 2 and m.stderr.startswith("trtforge: error:")


def test_output_dir_outside_the_project_when_the_manifest_says_so(built_project):
    toml = built_project / "engines.toml"
    toml.write_text(toml.read_text().replace("[defaults]", '[defaults]\noutput_dir = "../shipped"'))
    proc, _ = build(built_project)
    assert proc.returncode == 2 and "defaults.output_dir" in proc.stderr and "output_dir_outside" in proc.stderr
    toml.write_text(toml.read_text().replace("[defaults]", "[defaults]\noutput_dir_outside = true"))
    proc, _ = build(built_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list((built_project.parent / "shipped").rglob("mlp.engine"))


def test_a_folder_published_before_index_json_is_adopted(built_project):
    """Engines published by a trtforge without index.json: each bundle its sidecar vouches for
    (every digest matching) is adopted into a new index; anything else stays foreign."""
    (built_project / "engines" / "index.json").unlink()
    stray = next((built_project / "engines").glob("*/")) / "stray.engine"
    stray.write_bytes(b"x")
    proc, _ = build(built_project)
    assert proc.returncode == 2 and "stray.engine" in proc.stderr and "mlp.engine" not in proc.stderr
    stray.unlink()
    proc, _ = build(built_project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(index(built_project)["modules"]["mlp"]["files"]) == engine_files(built_project)
