"""Bad input, round two (issue 18), beyond the manifest: Click's own usage errors, cache
management values, factories that exit, chdir or write to raw fds, a pass name that is not a
pass, `cache gc` during a cold build, and `cache verify` that converges. Through the console
script; the factory cases run the real exporter on the tiny module."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TRTFORGE, Pause, run_cli
from tests.errors.conftest import build, nothing_lost, one_error_line, write_case

pytestmark = pytest.mark.slow  # the console script on real builds


def module(factory: str, shape="[1, 3, 8, 8]", extra: str = "") -> str:
    return f'[modules.m]\nfactory = "{factory}"\ninputs.x = {{ shape = {shape} }}\n{extra}'


TINY = module("bad_models:make_tiny")


def _records(cache: Path) -> list[Path]:
    return [p for p in (cache / "actions").glob("*/*.json") if not p.name.endswith(".key.json")]


# ------------------------------------------------------------------------- Click's usage errors

USAGE = [
    (
        "jobs_zero",
        ["build", "--jobs", "0", "usage.toml"],
        ["'--jobs'", "0 is not in the range x>=1", "see 'trtforge build --help'"],
    ),
    ("jobs_negative", ["build", "--jobs", "-1", "usage.toml"], ["'--jobs'", "-1 is not in the range"]),
    ("misspelt_command", ["biuld"], ["No such command 'biuld'", "see 'trtforge --help'"]),
    ("unknown_flag", ["build", "--qiuet", "usage.toml"], ["No such option '--qiuet'", "Did you mean '--quiet'"]),
    ("manifest_is_a_folder", ["build", "a_folder"], ["'a_folder' is a directory"]),
    ("unknown_backend_flag", ["build", "--backend", "rtx", "usage.toml"], ["'--backend'", "'rtx' is not one of"]),
]


@pytest.mark.parametrize("case, args, needles", USAGE, ids=[c[0] for c in USAGE])
def test_click_usage_error_is_one_line(project, case, args, needles):
    (project / "a_folder").mkdir(exist_ok=True)
    write_case(project, "usage", TINY)
    r = run_cli(*args, cwd=project)
    one_error_line(r, 2, *needles)
    assert "Usage:" not in r.stderr and r.stdout == ""
    nothing_lost(project, "usage", "m")


def test_help_still_exits_zero(project):
    r = run_cli("build", "--help", cwd=project)
    assert r.returncode == 0 and "Usage:" in r.stdout and r.stderr == ""


# ------------------------------------------------------------------------ cache gc values

GC_VALUES = [
    ("max_size_empty", ["--max-size", ""], ["--max-size", "'' is not a size"]),
    ("max_size_negative", ["--max-size", "-1"], ["--max-size", "'-1' is not a size"]),
    ("max_size_1e400", ["--max-size", "1e400G"], ["--max-size", "'1e400G' is not a size"]),
    ("max_size_inf", ["--max-size", "inf"], ["--max-size", "'inf' is not a size"]),
    ("max_size_unit_only", ["--max-size", "G"], ["--max-size", "'G' is not a size"]),
    ("older_than_empty", ["--older-than", ""], ["--older-than", "'' is not an age"]),
    ("older_than_negative", ["--older-than", "-3d"], ["--older-than", "'-3d' is not an age"]),
    ("older_than_nan", ["--older-than", "nan"], ["--older-than", "'nan' is not an age"]),
]


@pytest.fixture(scope="module")
def tiny_built(project) -> Path:
    """The tiny module built into the shared cache once (a cache hit when another case built it)."""
    write_case(project, "tiny_built", TINY)
    r = build(project, "tiny_built")
    assert r.returncode == 0, r.stderr
    return project / ".trtforge-cache"


@pytest.mark.parametrize("case, args, needles", GC_VALUES, ids=[c[0] for c in GC_VALUES])
def test_gc_values_are_parsed_strictly(project, tiny_built, case, args, needles):
    """`--max-size -1` once deleted every record (112 -> 0, exit 0)."""
    before = sorted(_records(tiny_built))
    r = run_cli("cache", "gc", "--cache-dir", str(tiny_built), *args, cwd=project)
    one_error_line(r, 2, *needles)
    assert sorted(_records(tiny_built)) == before and before


def test_junit_path_under_a_file(project):
    r = run_cli("verify", "--junit", "/dev/null/x.xml", "engines", cwd=project)
    one_error_line(r, 2, "--junit /dev/null/x.xml", "'/dev/null' is not a folder")


# ------------------------------------------------------------------------------- factories

FACTORIES = [
    (
        "factory_base_exception",
        module("bad_models:make_base_exception"),
        ["modules.m.factory", "factory raised Bailout: the factory gave up"],
    ),
    ("factory_sys_exit_0", module("bad_models:make_sys_exit"), ["modules.m.factory", "factory called sys.exit(0)"]),
    (
        "factory_sys_exit_3",
        module("bad_models:make_sys_exit", extra="factory_args = { code = 3 }\n"),
        ["modules.m.factory", "factory called sys.exit(3)"],
    ),
]


@pytest.mark.parametrize("case, body, needles", FACTORIES, ids=[c[0] for c in FACTORIES])
def test_factory_that_exits_is_the_factorys_failure(project, case, body, needles):
    """sys.exit(0) in a factory once ended the build with exit 0 and nothing printed; sys.exit(3)
    with exit 3 (a verification failure) and no line."""
    write_case(project, case, body)
    r = build(project, case)
    line = one_error_line(r, 2, "module 'm'", *needles)
    assert line.startswith("trtforge: error: export: ")
    stages = json.loads((project / f"out-{case}" / "report.json").read_text())["modules"][0]["stages"]
    assert stages["export"]["state"] == "failed"
    nothing_lost(project, case, "m")


def test_factory_chdir_with_relative_cache_dir(project):
    """A factory that chdir()s once sent a relative --cache-dir's later paths elsewhere (traceback)."""
    case = "factory_chdir"
    write_case(project, case, module("bad_models:make_chdir"))
    r = build(project, case, "--cache-dir", "rel-cache")
    assert r.returncode == 0, r.stderr
    assert _records(project / "rel-cache") and not (project / "elsewhere" / "rel-cache").exists()
    assert list((project / f"out-{case}").rglob("m.engine"))


def test_factory_raw_fd_writes_go_to_the_export_log(project):
    """os.write(1/2), print and a child process of the factory: none reach --json's stdout or the
    terminal's stderr; all are in the export stage's log."""
    case = "factory_noisy"
    write_case(project, case, module("bad_models:make_noisy"))
    r = run_cli("build", "--json", f"{case}.toml", cwd=project)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["modules"][0]["ok"]  # the whole of stdout is the JSON document
    assert "from the factory" not in r.stdout + r.stderr and r.stderr == "", r.stdout + r.stderr
    index = json.loads((project / ".trtforge-cache" / "index" / "m" / "export.json").read_text())
    record = json.loads(next((project / ".trtforge-cache" / "actions").glob(f"*/{index['key']}.json")).read_text())
    digest = record["outputs"]["export.log"]["digest"]
    log = (project / ".trtforge-cache" / "blobs" / digest[:2] / digest).read_text()
    for text in ("RAW-FD1", "RAW-FD2", "PRINTED", "CHILD"):
        assert f"{text} from the factory" in log, log


def test_pass_name_must_name_a_pass_class(project):
    """'os:system' once ran a shell command as a "pass": refused before it is called."""
    case = "pass_os_system"
    write_case(project, case, TINY + 'passes = [{ name = "os:system", command = "touch pwned" }]\n')
    r = build(project, case)
    line = one_error_line(
        r,
        2,
        "module 'm'",
        "modules.m.passes[0]",
        "'os:system' is a builtin_function_or_method, not a pass class",
        "GraphPass",
    )
    assert line.startswith("trtforge: error: graph_passes: ")
    assert not (project / "pwned").exists()
    nothing_lost(project, case, "m")


# ------------------------------------------------------------------------- gc and verify


def test_gc_during_a_cold_build_waits_for_it(project, tmp_path):
    """`cache gc --max-size 0` between two stages of a cold build once collected the export's
    blobs (CorruptEntry ... blob for caller_inputs.npz missing, exit 1). The build now holds the gc
    lock shared for the whole module: gc waits, the build finishes, then gc collects."""
    case = "gc_cold"
    write_case(project, case, module("bad_models:make_tiny", shape="[1, 3, 8, 20]"))
    cache, pause = tmp_path / "cache", Pause(tmp_path / "pause", "before:graph_passes")
    proc = subprocess.Popen(
        [TRTFORGE, "build", "--quiet", f"{case}.toml", "--cache-dir", str(cache)],
        cwd=project,
        env={**os.environ, **pause.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    gc = None
    try:
        pause.wait(proc)
        assert _records(cache)  # the export's record is stored: what gc used to collect
        with open(cache / "locks" / "gc.lock", "a+b") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # the build holds it shared
        gc = subprocess.Popen(
            [TRTFORGE, "cache", "gc", "--cache-dir", str(cache), "--max-size", "0"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        pause.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    gc_out, gc_err = gc.communicate(timeout=120)
    assert gc.returncode == 0, gc_err
    # it ran after the build, which pinned its five records behind the published engine (issue 28)
    assert "removed 0 record(s)" in gc_out and len(_records(cache)) == 5
    assert list((project / f"out-{case}").rglob("m.engine"))
    assert run_cli("cache", "verify", "--cache-dir", str(cache), cwd=project).returncode == 0


def test_cache_verify_converges(project, tiny_built, tmp_path):
    """A corrupt blob of a record: the first verify drops the blob and the record (exit 3), the
    second is clean (it once exited 3 on every later run), and a build rebuilds what went."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_built, cache)
    export = next(d for d in (json.loads(p.read_text()) for p in _records(cache)) if d["stage"] == "export")
    digest = export["outputs"]["caller_inputs.npz"]["digest"]
    blob = cache / "blobs" / digest[:2] / digest
    blob.chmod(0o644)
    blob.write_bytes(b"bit rot" + blob.read_bytes()[7:])
    first = run_cli("cache", "verify", "--cache-dir", str(cache), cwd=project)
    assert first.returncode == 3, first.stdout + first.stderr
    assert f"corrupt blob {digest[:16]}" in first.stdout
    dropped = [ln for ln in first.stdout.splitlines() if ln.startswith(f"record {export['key'][:12]} (export)")]
    assert len(dropped) == 1 and "caller_inputs.npz" in dropped[0] and "record dropped" in dropped[0], first.stdout
    second = run_cli("cache", "verify", "--cache-dir", str(cache), cwd=project)
    assert second.returncode == 0 and "0 problem(s)" in second.stdout, second.stdout
    r = build(project, "tiny_built", "--cache-dir", str(cache))
    assert r.returncode == 0, r.stderr
