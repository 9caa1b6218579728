"""The progress count "[k/n]": n is the engines this run builds (those with a stage to run), not
every engine the manifest names (issue 29: a rebuild where most stages came from the cache showed
"[1/2] b verify" for the only engine it built)."""

from __future__ import annotations

import io
import re
import shutil

import pytest

import trtforge
from tests.errors.conftest import HERE as ERRORS
from trtforge.processes.progress import Progress

TWO = """
[modules.a]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 8, 8] }

[modules.b]
factory = "bad_models:make_tiny"
inputs.x = { shape = [1, 3, 16, 16] }
"""


def _build(tmp_path, **options) -> list[str]:
    stream = io.StringIO()  # not a terminal: one plain line per stage start and end
    progress = Progress(stream)
    try:
        outcome = trtforge.build(tmp_path / "engines.toml", progress=progress, **options)
    finally:
        progress.close()
    assert outcome.ok, [e.one_line() for e in outcome.errors]
    return stream.getvalue().splitlines()


@pytest.mark.slow
def test_the_count_is_the_engines_this_run_builds(tmp_path):
    shutil.copy(ERRORS / "bad_models.py", tmp_path / "bad_models.py")
    (tmp_path / "engines.toml").write_text(TWO)
    first = _build(tmp_path)
    assert {re.match(r"\[(\d/\d)\] (\w+) ", line).groups() for line in first} == {("1/2", "a"), ("2/2", "b")}

    assert _build(tmp_path) == []  # a no-op build shows nothing (and plans nothing twice)

    # only b changed: its verify is the one stage that runs, the one engine of this run
    (tmp_path / "engines.toml").write_text(TWO + "verify.atol = 0.5\n")
    again = _build(tmp_path)
    assert again and all(line.startswith("[1/1] b verify ") for line in again), again

    # a stage forced: every engine named runs again
    forced = _build(tmp_path, modules=["b"], force_from="verify")
    assert forced and all(line.startswith("[1/1] b verify ") for line in forced), forced
    forced = _build(tmp_path, force_from="verify")
    assert {line.split()[0] for line in forced} == {"[1/2]", "[2/2]"}, forced
