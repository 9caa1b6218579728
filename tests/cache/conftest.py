"""A tiny real project (a 2-layer MLP, one module; a full build takes a few seconds on the CPU) and
the invariants every crash, corruption and concurrency test checks afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import STAGES, TRTFORGE, built_once, run_cli  # noqa: F401  (STAGES: re-exported)

MLP = """\
import torch
from torch import nn


def make_mlp(width: int = 16, seed: int = 0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 4))
"""

MANIFEST = """\
[defaults]
precision.rules = []

[modules.mlp]
factory = "tinymods.mlp:make_mlp"
factory_args = {{ width = {width} }}
inputs.x = {{ shape = [2, 8], dtype = "float16" }}
outputs = ["y"]
verify = {{ atol = {atol} }}
"""


def write_project(root: Path, width: int = 16, atol: float = 0.01) -> Path:
    (root / "tinymods").mkdir(parents=True, exist_ok=True)
    (root / "tinymods" / "__init__.py").write_text("")
    (root / "tinymods" / "mlp.py").write_text(MLP)
    set_manifest(root, width=width, atol=atol)
    return root


def set_manifest(root: Path, width: int = 16, atol: float = 0.01) -> None:
    (root / "engines.toml").write_text(MANIFEST.format(width=width, atol=atol))


@pytest.fixture
def tiny_project(tmp_path) -> Path:
    return write_project(tmp_path / "proj")


def _build_tiny(folder: Path) -> None:
    root = write_project(folder / "proj")
    proc, _ = build(root)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="session")
def _built_once(tmp_path_factory) -> Path:
    """The tiny project built once for the whole session (every xdist worker shares it)."""
    return built_once(tmp_path_factory, "tiny", _build_tiny) / "proj"


@pytest.fixture
def built_project(_built_once, tmp_path) -> Path:
    """The tiny project after one full build (its cache and engines/), copied: keys do not depend
    on where a project lives, so the copy is up to date."""
    dest = tmp_path / "proj"
    shutil.copytree(_built_once, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def _republish_once(tmp_path_factory, _built_once) -> Path:
    def make(folder: Path) -> None:
        root = folder / "proj"
        shutil.copytree(_built_once, root, symlinks=True)
        for width in (24, 16):  # width 24 into the cache, then width 16 published again
            set_manifest(root, width=width)
            proc, _ = build(root)
            assert proc.returncode == 0, proc.stderr[-2000:]

    return built_once(tmp_path_factory, "tiny-republish", make) / "proj"


@pytest.fixture
def republish_project(_republish_once, tmp_path) -> Path:
    """built_project whose cache also holds every stage of width 24: after
    `set_manifest(root, width=24)` the next build runs no stage, it only publishes the other
    engine over the published one (for the tests of the publish step, which need no stage run)."""
    dest = tmp_path / "proj"
    shutil.copytree(_republish_once, dest, symlinks=True)
    return dest


def build(root: Path, *args, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict | None]:
    """`trtforge build --json`; returns the process and the parsed report (None if it died)."""
    proc = run_cli("build", "engines.toml", "--json", *args, cwd=root, env=env, timeout=300)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = None
    return proc, report


def states(report: dict, module: str = "mlp") -> dict:
    (mod,) = [m for m in report["modules"] if m["name"] == module]
    return {s: v["state"] for s, v in mod["stages"].items()}


def popen_build(root: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [TRTFORGE, "build", "engines.toml", "--json"],
        cwd=root,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def records(cache: Path) -> list[dict]:
    """Every action record; each must parse: records are only ever written whole."""
    out = []
    for path in sorted((cache / "actions").glob("*/*.json")):
        if not path.name.startswith(".") and not path.name.endswith(".key.json"):
            out.append(json.loads(path.read_text()))
    return out


def stages_recorded(cache: Path) -> set[str]:
    return {r["stage"] for r in records(cache)}


def blob(cache: Path, digest: str) -> Path:
    return cache / "blobs" / digest[:2] / digest


def record_of(cache: Path, stage: str) -> dict:
    (rec,) = [r for r in records(cache) if r["stage"] == stage]
    return rec


def _is_sidecar(path: Path) -> bool:
    if path.suffix != ".json":
        return False
    doc = json.loads(path.read_text())
    return isinstance(doc, dict) and "files" in doc


def assert_consistent(root: Path) -> None:
    """No partial file under a final name, anywhere:
    - every blob's content hashes to its name, and every record's blobs exist (record written last);
    - every index entry and sidecar parses;
    - every published file is a complete copy of a cached blob, and a sidecar, when present,
      describes exactly the files beside it."""
    cache = root / ".trtforge-cache"
    blobs = {}
    for b in (cache / "blobs").glob("*/*"):
        if not b.name.startswith("."):
            assert sha256(b) == b.name, f"blob {b} does not match its digest"
            blobs[b.name] = b
    for rec in records(cache):
        for name, o in rec["outputs"].items():
            assert o["digest"] in blobs, f"record {rec['key'][:12]} ({rec['stage']}) names a missing blob {name}"
    for idx in (cache / "index").glob("*/*.json"):
        if not idx.name.startswith("."):
            json.loads(idx.read_text())
    for folder in (root / "engines").glob("*/"):
        vouched = set()
        for side in folder.glob("*.json"):
            doc = json.loads(side.read_text())
            if not (isinstance(doc, dict) and "files" in doc):
                continue  # a bundle file (polygraphy-inputs.json ...), not a sidecar: a sidecar vouches for it
            for fname, digest in doc["files"].items():
                assert sha256(folder / fname) == digest, f"sidecar {side.name} does not describe {fname}"
                vouched.add(fname)
        for f in folder.iterdir():
            if not f.name.startswith(".") and f.name not in vouched and not _is_sidecar(f):
                assert sha256(f) in blobs, f"published {f.name} is not a complete cached artifact"
