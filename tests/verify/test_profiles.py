"""Which optimization profile an input set runs under, and which bundle files `trtforge verify`
reads as sets (profile points included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trtforge.predeploy import _bundle_sets
from trtforge.verify.engine_check import profile_of

PROFILES = [{"image": {"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]}},
            {"image": {"min": [2, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [8, 3, 8, 8]}}]


def feeds(batch: int) -> dict:
    return {"image": np.zeros((batch, 3, 8, 8), np.float16)}


def test_each_set_runs_under_the_first_profile_that_holds_its_shapes():
    assert [profile_of(feeds(b), PROFILES) for b in (1, 2, 4, 8)] == [0, 1, 1, 1]
    assert profile_of(feeds(9), PROFILES) == 0  # none holds it: profile 0, the runtime says why
    assert profile_of(feeds(3), None) == 0  # a static engine has one implicit profile


def test_bundle_sets_pair_every_listed_inputs_file_with_its_reference():
    files = {f"m.{kind}{tag}.npz": "d" for kind in ("inputs", "reference")
             for tag in ("", ".r1", ".p0.min", ".p0.opt", ".p0.max", ".p1.max")}
    files["m.engine"] = "d"
    sets = _bundle_sets(Path("/x"), "m", {"files": files})
    assert [(i.name, r.name) for i, r in sets] == [
        ("m.inputs.npz", "m.reference.npz"),
        *((f"m.inputs{t}.npz", f"m.reference{t}.npz") for t in (".p0.max", ".p0.min", ".p0.opt", ".p1.max", ".r1"))]
