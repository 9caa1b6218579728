"""`explain` per [targets.NAME] target, under the keys the build computes for it: right after a
full build with targets, `explain --check` is the CI gate the README recommends and exits 0."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.trust.conftest import set_two_targets

pytestmark = pytest.mark.slow


def test_explain_check_after_a_full_build_with_targets(two_targets):
    proc = run_cli("explain", "--check", cwd=two_targets)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "a/mlp build: up to date" in proc.stdout and "b/mlp verify: up to date" in proc.stdout
    assert len(lines) == 10 and all(": up to date (" in line for line in lines)  # 5 stages x 2 targets

    proc = run_cli("explain", "--target", "b", cwd=two_targets)
    assert proc.returncode == 0 and {line.split()[0] for line in proc.stdout.splitlines()} == {"b/mlp"}
    proc = run_cli("explain", "--target", "c", cwd=two_targets)
    assert proc.returncode == 2 and "no target 'c'" in proc.stderr

    set_two_targets(two_targets, width=24)
    proc = run_cli("explain", "--check", "--target", "a", cwd=two_targets)
    assert (
        proc.returncode != 0
        and "a/mlp export: will rebuild; changed: material.module.factory_args.width: 16 -> 24" in proc.stdout
    )
