"""An unchanged build decides "all up to date" by hashing small files and reading small records:
it imports neither torch nor TensorRT and writes nothing (no record, index, report or engine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # starts from a real build

_PROBE = """
import json, sys
from trtforge.cli import main
try:
    main(["build", "engines.toml", "--quiet"])
except SystemExit as e:
    code = e.code
# numpy and onnx too: each costs 50+ ms of a budget of 300 (numpy also starts BLAS threads)
heavy = ("torch", "tensorrt", "tensorrt_rtx", "polygraphy", "onnxruntime", "onnx_graphsurgeon", "onnx", "numpy")
print(json.dumps({"code": code, "heavy": sorted(m for m in heavy if m in sys.modules)}))
"""


def _snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            out[os.path.join(dirpath, f)] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return out


def test_noop_build_imports_no_heavy_tool_and_writes_nothing(built_project):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    def run():
        return subprocess.run(
            [sys.executable, "-c", _PROBE], cwd=built_project, env=env, capture_output=True, text=True, timeout=120
        )

    first = run()  # the copied project's stat memo is re-made here (new paths)
    assert first.returncode == 0, first.stderr[-2000:]
    before = _snapshot(built_project)
    proc = run()
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"code": None, "heavy": []} or result == {"code": 0, "heavy": []}, result
    assert _snapshot(built_project) == before
