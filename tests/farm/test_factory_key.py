"""The export key covers the code the factory actually imports, not every *.py beside it.

At 7fe7866 every .py file in the factory's folder was in the export key: editing a helper script
that sat there re-ran every export, and a CI checkout without that script missed the whole remote
cache. Now the factory's own module is keyed before the run, and whatever the export loaded after
it (tracks_imports)."""

from __future__ import annotations

import shutil

import pytest

from tests.cache.conftest import STAGES, states, write_project
from tests.farm.conftest import farm_build, remote_of

pytestmark = pytest.mark.slow  # real exports and builds

FACTORY = """\
import torch
from torch import nn

from tinymods import helper


def make_mlp(width: int = 16, seed: int = 0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, helper.OUT))
"""


def _project(root):
    write_project(root)
    (root / "tinymods" / "mlp.py").write_text(FACTORY)
    (root / "tinymods" / "helper.py").write_text("OUT = 4\n")  # imported by the factory
    (root / "tinymods" / "plot_results.py").write_text("print('a script')\n")  # beside it, never imported
    return root


def test_only_imported_code_beside_the_factory_is_keyed(remote, tmp_path):
    a = _project(tmp_path / "a")
    proc, first = farm_build(a, remote)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(states(first).values()) == {"ok"}

    # a CI checkout without the unrelated script: every stage from the remote
    b = tmp_path / "b"
    shutil.copytree(a, b, ignore=shutil.ignore_patterns(".trtforge-cache", "engines", "plot_results.py"))
    proc, copy = farm_build(b, remote)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(states(copy).values()) == {"cached"}, "a checkout without the script re-ran a stage"
    assert remote_of(copy)["fetched"] == list(STAGES)

    # editing the script re-runs nothing
    (a / "tinymods" / "plot_results.py").write_text("print('another script')\n")
    proc, edited = farm_build(a, remote)
    assert proc.returncode == 0 and set(states(edited).values()) == {"cached"}, proc.stderr[-3000:]

    # editing the module the factory imports re-runs the export (the key names it)
    (a / "tinymods" / "helper.py").write_text("OUT = 4  # same value, new bytes\n")
    proc, helper = farm_build(a, remote)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert states(helper)["export"] == "ok"
