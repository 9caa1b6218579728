"""Runner parity: the same key built on two runners gives the same bytes, and where it does not
(a builder that is not deterministic), the first result stays and the difference is reported.

At 7fe7866 two runners that each ran export handed graph_passes different keys (the export log's
timestamps were part of them) and wrote different metadata files (each stage's wall times), so a
fleet's remote held one branch of records per runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cache.conftest import STAGES, records, states, write_project
from tests.conftest import run_console
from tests.farm.conftest import farm_build, remote_of
from trtforge.artifacts import NOT_KEYED

pytestmark = pytest.mark.slow  # real exports and TensorRT-RTX builds, in real interpreters

# the stages whose artifacts must be the same bytes (verify's key names the machine's GPUs)
COMPARED = ("export", "graph_passes", "precision_rules", "build")


def _artifacts(cache: Path) -> dict[str, tuple[str, dict]]:
    """stage -> (key, artifact digests without logs and timing caches)."""
    return {
        r["stage"]: (r["key"], {n: o["digest"] for n, o in r["outputs"].items() if n not in NOT_KEYED})
        for r in records(cache)
    }


def test_two_runners_build_the_same_bytes(tmp_path):
    """Two processes: different thread counts, different working folders (one runs from the
    project, the other names the manifest from above it), separate local caches, no remote."""
    one, two = write_project(tmp_path / "one"), write_project(tmp_path / "elsewhere" / "two")
    runs = [
        (one, ["build", "engines.toml", "--json"], {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}),
        (tmp_path / "elsewhere", ["build", "two/engines.toml", "--json"], {"OMP_NUM_THREADS": "2"}),
    ]
    for cwd, args, env in runs:
        proc = run_console(*args, cwd=cwd, env={**env, "TRTFORGE_REMOTE_CACHE": ""}, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert set(states(json.loads(proc.stdout)).values()) == {"ok"}
    a, b = _artifacts(one / ".trtforge-cache"), _artifacts(two / ".trtforge-cache")
    for stage in COMPARED:
        assert a[stage][0] == b[stage][0], f"{stage}: the runners computed different keys"
        assert a[stage][1] == b[stage][1], f"{stage}: the same key gave different artifacts"
    assert "model.engine" in a["build"][1] and "model.onnx.data" in a["export"][1]


RANDOM_PASS = '''
import uuid

from trtforge.graph_passes.base import GraphPass


class RandomNamesPass(GraphPass):
    """Not deterministic on purpose: every run names the nodes anew (outputs stay identical)."""

    name = "random_names"

    def apply(self, graph, ctx):
        for node in graph.nodes:
            node.name = f"n_{uuid.uuid4().hex[:8]}"
        return True
'''

PASSES = 'passes = [{ name = "randpass:RandomNamesPass" }, { name = "cleanup" }, { name = "toposort" }]\n'


def _random_project(root: Path) -> Path:
    write_project(root)
    (root / "randpass.py").write_text(RANDOM_PASS)
    with open(root / "engines.toml", "a") as f:
        f.write(PASSES)
    return root


def test_a_result_that_differs_from_the_remotes_is_reported_and_the_first_kept(remote, tmp_path):
    a, b = _random_project(tmp_path / "a"), _random_project(tmp_path / "b")
    proc, first = farm_build(a, remote)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = {r["stage"]: r for r in records(a / ".trtforge-cache")}
    remote_before = remote.records()["graph_passes"]["outputs"]

    # runner b runs graph_passes again under the same key (as two runners starting together do)
    proc, second = farm_build(b, remote, "--force", "--stage", "graph_passes")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert states(second)["graph_passes"] == "ok"
    assert "note: mlp: not reproducible: graph_passes" in proc.stderr, proc.stderr[-3000:]
    (diverged,) = remote_of(second)["diverged"]
    assert diverged["stage"] == "graph_passes" and diverged["kept"] == "remote"
    assert "model.onnx" in diverged["files"]
    assert diverged["files"]["model.onnx"]["remote"] == theirs["graph_passes"]["outputs"]["model.onnx"]["digest"]
    (mod,) = second["modules"]
    assert any(n.startswith("not reproducible: graph_passes") for n in mod["notes"])
    (saved,) = json.loads((b / "engines" / "report.json").read_text())["modules"]
    assert saved["remote"]["diverged"] == [diverged] and saved["notes"] == mod["notes"]
    # the first stays on the remote, and runner b took it: its later stages are keyed as a's
    assert remote.records()["graph_passes"]["outputs"] == remote_before
    mine = {r["stage"]: r for r in records(b / ".trtforge-cache")}
    assert mine["graph_passes"]["outputs"] == theirs["graph_passes"]["outputs"]
    for stage in STAGES[2:4]:
        assert second["modules"][0]["stages"][stage]["key"] == first["modules"][0]["stages"][stage]["key"]
