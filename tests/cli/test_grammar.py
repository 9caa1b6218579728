"""One CLI grammar, targets first-class (issue #29's CLI rows), through the console script on a real
build of one module with a dynamic batch for two [targets]:
- the manifest passed one way on every command (-m/--manifest; the positional form kept);
- `verify --module` names modules as build does, plus `--target`; a target's folder verifies alone;
- `inspect MODULE --target`, and the optimization profiles printed;
- progress lines `[n/N] target/module stage 1.2s, RSS 300 MiB`, each once;
- `-h` everywhere, `-v`/`-q` after every subcommand;
- `explain --check`: its own exit code for "would rebuild", a plain message."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import click
import pytest

from tests.conftest import built_once, run_cli
from tests.errors.conftest import HERE as ERRORS

pytestmark = pytest.mark.slow

MANIFEST = "release.toml"  # not engines.toml: a command that ignored -m would not find it
TEXT = """
[modules.tiny]
factory = "bad_models:make_tiny"
inputs.x = { shape = ["batch", 3, 8, 8] }
dims.batch = { min = 1, opt = 2, max = 4 }

[targets.ampere_ada]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.0", "8.6", "8.9"]

[targets.consumer]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.9"]
"""
PROFILE = "profile 0: x min=[1, 3, 8, 8] opt=[2, 3, 8, 8] max=[4, 3, 8, 8]"


def _make(root: Path) -> None:
    shutil.copy(ERRORS / "bad_models.py", root / "bad_models.py")
    (root / MANIFEST).write_text(TEXT)
    r = run_cli("build", MANIFEST, cwd=root)
    assert r.returncode == 0, r.stderr
    (root / "first-build.stderr").write_text(r.stderr)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Read only (copy it to change anything)."""
    return built_once(tmp_path_factory, "cli-targets", _make)


def _ok(*args, cwd: Path, code: int = 0):
    r = run_cli(*args, cwd=cwd)
    assert r.returncode == code, (args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r


def test_progress_names_target_count_and_memory_once(project):
    lines = (project / "first-build.stderr").read_text().splitlines()
    done = [ln for ln in lines if re.fullmatch(r"\[[12]/2\] \S+ \S+ [0-9.]+s, RSS [0-9.]+ [MG]iB", ln)]
    assert any(ln.startswith("[1/2] ampere_ada/tiny export ") for ln in done), lines
    assert any(ln.startswith("[2/2] consumer/tiny build ") for ln in done), lines
    assert len({ln.rsplit(" ", 3)[0] for ln in done}) == len(done)  # no stage of an engine reported twice
    assert not [ln for ln in lines if "done in" in ln or ln.startswith("[trtforge]")]


def test_the_manifest_is_passed_one_way_everywhere(project, tmp_path):
    for args in (
        ("build", "-q", "-m", MANIFEST),
        ("build", "-q", MANIFEST),  # the positional form, kept
        ("explain", "--manifest", MANIFEST),
        ("explain", MANIFEST),
        ("inspect", "tiny:export", "-m", MANIFEST),
        ("export", "tiny", "--stage", "export", "-o", str(tmp_path / "onnx"), "-m", MANIFEST),
        ("cache", "ls", "-m", MANIFEST),
        ("debug", "precision", "tiny", "-m", MANIFEST),
        ("debug", "precision", "tiny", MANIFEST),  # the positional form, kept
    ):
        _ok(*args, cwd=project)
    both = _ok("build", "engines.toml", "-m", MANIFEST, cwd=project, code=2)
    assert both.stderr.startswith("trtforge: error: -m/--manifest: two manifests given") and both.stdout == ""


def test_verify_names_modules_as_build_does_and_takes_a_target(project):
    def checked(*args) -> list[str]:
        r = _ok("verify", "engines", *args, "--json", cwd=project)
        return [m["module"] for m in json.loads(r.stdout)["modules"]]

    assert checked("--module", "tiny") == ["ampere_ada/tiny", "consumer/tiny"]
    assert checked("--module", "tiny", "--target", "consumer") == ["consumer/tiny"]
    assert checked("--target", "ampere_ada") == ["ampere_ada/tiny"]
    assert checked("--module", "consumer/tiny") == ["consumer/tiny"]  # the index's own name, kept
    bad = _ok("verify", "engines", "--target", "consumr", cwd=project, code=2)
    assert "no published engine for target 'consumr'; did you mean 'consumer'?" in bad.stderr


def test_a_targets_folder_verifies_on_its_own(project, tmp_path):
    in_place = _ok("verify", "engines/consumer", cwd=project)
    assert in_place.stdout.splitlines() == [
        "consumer/tiny: not run: engine not run here: no NVIDIA GPU on this machine"
    ]
    alone = tmp_path / "ship" / "consumer"
    shutil.copytree(project / "engines" / "consumer", alone)
    r = _ok("verify", str(alone), cwd=tmp_path)
    assert r.stdout.startswith("tiny: not run: ") and f"{alone} has no index.json" in r.stderr
    engine = alone / "tiny.engine"
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.write_bytes(bytes(data))
    bad = _ok("verify", str(alone), cwd=tmp_path, code=3)
    assert "tiny.engine does not match its digest" in bad.stderr and "not deserialised" in bad.stderr


def test_inspect_takes_a_target_and_prints_the_profiles(project):
    r = _ok("inspect", "tiny", "--target", "consumer", "-m", MANIFEST, cwd=project)
    assert r.stdout.startswith(str(project / "engines" / "consumer" / "tiny.engine"))
    assert "target consumer" in r.stdout and "profiles: 1" in r.stdout and PROFILE in r.stdout
    doc = json.loads(_ok("inspect", "tiny", "--target", "ampere_ada", "-m", MANIFEST, "--json", cwd=project).stdout)
    assert doc["versions"]["target"] == "ampere_ada"
    assert doc["modules"][0]["profiles"] == [{"x": {"min": [1, 3, 8, 8], "opt": [2, 3, 8, 8], "max": [4, 3, 8, 8]}}]
    last = _ok("inspect", "tiny", "-m", MANIFEST, cwd=project)  # no --target: says which, and how to pick
    assert "(the last built); also published: " in last.stdout and "pick one with --target" in last.stdout
    bad = _ok("inspect", "tiny", "--target", "nope", "-m", MANIFEST, cwd=project, code=2)
    assert "targets published in" in bad.stderr and "ampere_ada, consumer" in bad.stderr


def _commands(group: click.Group, path: tuple = ()):
    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))


def test_h_everywhere_and_v_q_after_every_subcommand(project):
    from trtforge.cli import main

    for path, cmd in [((), main), *_commands(main)]:
        r = _ok(*path, "-h", cwd=project)
        assert r.stdout.startswith(f"Usage: trtforge {' '.join(path)}".rstrip()), path
        if not isinstance(cmd, click.Group):
            names = {o for p in cmd.params for o in getattr(p, "opts", ())}
            assert {"-v", "--verbose", "-q", "--quiet"} <= names, path
    quiet = _ok("verify", "engines", "-q", cwd=project)
    assert quiet.stdout == "" and quiet.stderr == ""
    assert _ok("explain", "-m", MANIFEST, "-q", cwd=project).stdout == ""
    verbose = _ok("build", "-m", "missing.toml", "-v", cwd=project, code=2)
    assert verbose.stderr.startswith("trtforge: error: ")


def test_explain_check_has_its_own_exit_code_and_a_plain_message(tiny_built, tiny_copy):
    assert _ok("explain", "--check", cwd=tiny_built).returncode == 0
    manifest = tiny_copy / "engines.toml"
    manifest.write_text(manifest.read_text().replace("[1, 3, 8, 8]", "[1, 3, 8, 16]"))
    stale = _ok("explain", "--check", cwd=tiny_copy, code=4)
    assert "tiny export: will rebuild; changed:" in stale.stdout
    assert stale.stderr == "trtforge: not up to date: tiny; `trtforge build` rebuilds it\n"
    doc = json.loads(_ok("explain", "--check", "--json", cwd=tiny_copy, code=4).stdout)
    assert doc["exit_code"] == 4 and doc["ok"] is False and doc["would_build"] == ["tiny"]
