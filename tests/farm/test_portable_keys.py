"""Keys that travel: two runners with their own checkouts and their own virtual environments at
different paths share every hit through one remote, and no key names a path of the machine.

The venvs are real (`python -m venv`, the suite's own packages reached through a .pth line) and
each gets a small distribution installed by pip from a wheel: its files land at a different
absolute path in each, and its RECORD lists a console script whose `#!` line is that venv's
python. The factory imports it, so the export key covers it. The first runner's venv is removed
before the second builds (another machine). At 7fe7866 the second runner missed: it re-hashed the
distribution's files at the first runner's venv path (gone), and the RECORD's digest differs
through the script's `#!` line."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.cache.conftest import STAGES, states, write_project
from tests.farm.conftest import remote_of

pytestmark = pytest.mark.slow  # real venvs, real builds

FACTORY = """\
import torch
from torch import nn

import farmhelper


def make_mlp(width: int = 16, seed: int = 0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 4), farmhelper.Scale())
"""

HELPER = """\
from torch import nn

GAIN = 2.0


class Scale(nn.Module):
    def forward(self, x):
        return x * GAIN


def main():
    print("farmhelper")
"""


def _wheel(dest: Path) -> Path:
    """farmhelper 1.0 as a wheel, with a console script (pip writes it into the venv's bin/)."""
    info = "farmhelper-1.0.dist-info"
    files = {
        "farmhelper/__init__.py": HELPER,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: farmhelper\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\nfarmhelper = farmhelper:main\n",
    }
    rows = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*rows, f"{info}/RECORD,,"]) + "\n"
    path = dest / "farmhelper-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def _venv(folder: Path) -> Path:
    """A real venv at `folder`, the suite's packages (torch, trtforge, ...) reached through a .pth
    line, farmhelper installed into its own site-packages by pip from a wheel kept beside it."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    ours = sysconfig.get_paths()["purelib"]
    (site / "suite.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    wheel = _wheel(folder.parent)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
    )
    return python


def _runner(root: Path) -> Path:
    write_project(root)
    (root / "tinymods" / "mlp.py").write_text(FACTORY)
    return root


def _build(python: Path, root: Path, remote) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [python, "-m", "trtforge", "build", "engines.toml", "--json"],
        cwd=root,
        env={**env, **remote.env()},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(proc.stdout)


def _key_docs(cache: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in cache.glob("actions/*/*.key.json")}


def test_two_runners_at_different_paths_share_every_hit(remote, tmp_path):
    py_a, py_b = _venv(tmp_path / "ci-a" / "venv"), _venv(tmp_path / "runner-b" / "env")
    a, b = _runner(tmp_path / "ci-a" / "checkout"), _runner(tmp_path / "runner-b" / "work" / "src")
    records = [
        next(py.parents[1].glob("lib/python*/site-packages/farmhelper-1.0.dist-info/RECORD")) for py in (py_a, py_b)
    ]
    assert records[0].read_bytes() != records[1].read_bytes()  # the RECORDs differ (#! lines)

    _, first = _build(py_a, a, remote)
    assert set(states(first).values()) == {"ok"}
    export_doc = json.loads(
        (a / ".trtforge-cache" / "actions" / first["modules"][0]["stages"]["export"]["key"][:2])
        .joinpath(first["modules"][0]["stages"]["export"]["key"] + ".key.json")
        .read_text()
    )
    assert "farmhelper" in export_doc["material"]["imports"]["dists"]  # the helper is keyed

    # runner a's machine is not this one: nothing of its venv is there for runner b to read
    shutil.rmtree(py_a.parents[1])
    _, second = _build(py_b, b, remote)  # another venv path, another checkout path, its own cache
    assert set(states(second).values()) == {"cached"}, "the second runner ran a stage"
    assert remote_of(second)["fetched"] == list(STAGES)
    for stage in STAGES:
        assert second["modules"][0]["stages"][stage]["key"] == first["modules"][0]["stages"][stage]["key"]

    # no key names a path of either machine: checkouts, venvs, the temp folder, the home folder
    docs = {**_key_docs(a / ".trtforge-cache"), **_key_docs(b / ".trtforge-cache")}
    assert docs
    for text in docs.values():
        for path in (str(tmp_path), str(Path.home()), sys.prefix, str(Path(__file__).resolve().parents[2])):
            assert path not in text, f"a key names {path}"
