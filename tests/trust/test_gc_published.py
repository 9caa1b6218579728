"""`cache gc` never evicts the records behind a published entry of any target: before, the last
build's keys were the only ones kept, so `--max-size` dropped the targets the last run did not
build and the next no-change build rebuilt their engines."""

from __future__ import annotations

import pytest

from tests.cache.conftest import build, states
from tests.conftest import cache_problems, run_cli

pytestmark = pytest.mark.slow


def test_gc_keeps_every_published_target(two_targets):
    proc, _ = build(two_targets, "--target", "a")  # the last run built a alone
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli("cache", "gc", "--max-size", "1", cwd=two_targets)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert cache_problems(two_targets / ".trtforge-cache") == []

    proc, report = build(two_targets)  # nothing changed: nothing runs, for either target
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("a/mlp", "b/mlp"):
        assert set(states(report, name).values()) == {"cached"}, (name, states(report, name))

    # a withdrawn target is unpinned: its records may go again
    (two_targets / "engines.toml").write_text((two_targets / "engines.toml").read_text().split("[targets.b]")[0])
    proc, _ = build(two_targets)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not list((two_targets / ".trtforge-cache" / "index" / "mlp").glob("*@b.json"))
    assert list((two_targets / ".trtforge-cache" / "index" / "mlp").glob("*@a.json"))
