"""A damaged engines/index.json (truncated by a full disk) is rebuilt from the folder's own
sidecars whose digests hold; files no sidecar vouches for are refused as before. Before, every
later build refused the whole folder as foreign files (exit 2) and it could not heal."""

from __future__ import annotations

import json

import pytest

from tests.cache.conftest import build, states
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_truncated_index_is_rebuilt_from_the_sidecars(two_targets):
    engines = two_targets / "engines"
    index = engines / "index.json"
    before = json.loads(index.read_text())["modules"]
    index.write_bytes(index.read_bytes()[: len(index.read_bytes()) // 2])

    proc, report = build(two_targets)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(states(report, "a/mlp").values()) == set(states(report, "b/mlp").values()) == {"cached"}
    assert json.loads(index.read_text())["modules"] == before
    assert run_cli("verify", "engines", cwd=two_targets).returncode == 0

    # a file its sidecar does not vouch for (another engine under the same name) is not adopted
    index.write_bytes(b'{"format": 1, "modu')
    (engines / "b" / "mlp.engine").write_bytes(b"not the engine the sidecar names")
    proc, _ = build(two_targets)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "the output folder holds b/mlp.engine and" in proc.stderr and "not in index.json" in proc.stderr
    assert (engines / "b" / "mlp.engine").read_bytes() == b"not the engine the sidecar names"  # never deleted
