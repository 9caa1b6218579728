"""The bad-input catalogue's shared project: one folder with the catalogue's factories and one
cache shared by every case (a case reuses the stages another case already built). Each case writes
its own manifest with its own output folder, so "nothing was published" is checked per case."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from tests.conftest import cache_problems, run_cli

HERE = Path(__file__).resolve().parent
ERROR_PREFIX = "trtforge: error: "


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("catalogue")
    for name in ("bad_models.py", "broken_import.py"):
        shutil.copy(HERE / name, root / name)
    return root


def write_case(project: Path, case: str, body: str, *, header: bool = True) -> Path:
    """`<case>.toml` publishing into `out-<case>/`, sharing the project's cache."""
    text = textwrap.dedent(body).lstrip()
    if header:
        text = f'[defaults]\noutput_dir = "out-{case}"\n\n' + text
    path = project / f"{case}.toml"
    path.write_text(text)
    return path


def build(project: Path, case: str, *extra, env=None):
    return run_cli("build", "--quiet", f"{case}.toml", *extra, cwd=project, env=env)


def one_error_line(r, exit_code: int, *needles: str) -> str:
    """Exit code, exactly one `trtforge: error:` line containing every needle, no traceback, and
    nothing else on stderr but trtforge's own lines (no exporter or parser chatter)."""
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    assert r.returncode == exit_code, out
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, r.stderr
    line = errors[0]
    for n in needles:
        assert n in line, f"{n!r} not in {line!r}"
    stray = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("trtforge: ")]
    assert not stray, f"stray stderr lines: {stray}"
    return line


def nothing_lost(project: Path, case: str, module: str) -> None:
    """No engine of the module under the case's output folder, no temp files left there, and the
    shared cache still verifies."""
    out = project / f"out-{case}"
    if out.exists():
        assert not list(out.rglob(f"{module}.engine")), list(out.rglob("*"))
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    cache = project / ".trtforge-cache"
    if cache.exists():
        assert cache_problems(cache) == []
        assert not list((cache / "tmp").iterdir()), "a stage work folder was left behind"
