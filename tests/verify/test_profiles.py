"""Which optimization profile an input set runs under, and which bundle files `trtforge verify`
reads as sets (profile points included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trtforge.driver.predeploy import _bundle_sets
from trtforge.verify.engine_check import profile_of

PROFILES = [
    {"image": {"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]}},
    {"image": {"min": [2, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [8, 3, 8, 8]}},
]


def feeds(batch: int) -> dict:
    return {"image": np.zeros((batch, 3, 8, 8), np.float16)}


def test_each_set_runs_under_the_first_profile_that_holds_its_shapes():
    assert [profile_of(feeds(b), PROFILES) for b in (1, 2, 4, 8)] == [0, 1, 1, 1]
    assert profile_of(feeds(9), PROFILES) == 0  # none holds it: profile 0, the runtime says why
    assert profile_of(feeds(3), None) == 0  # a static engine has one implicit profile


def test_bundle_sets_pair_every_listed_inputs_file_with_its_reference():
    files = {
        f"m.{kind}{tag}.npz": "d"
        for kind in ("inputs", "reference")
        for tag in ("", ".r1", ".p0.min", ".p0.opt", ".p0.max", ".p1.max")
    }
    files["m.engine"] = "d"
    sets = _bundle_sets(Path("/x"), "m", {"files": files})
    assert [(i.name, r.name) for i, r in sets] == [
        ("m.inputs.npz", "m.reference.npz"),
        *((f"m.inputs{t}.npz", f"m.reference{t}.npz") for t in (".p0.max", ".p0.min", ".p0.opt", ".p1.max", ".r1")),
    ]


class RecordingRunner:
    """Test double for polygraphy's TrtRunner: running a TensorRT engine needs a GPU the backend
    supports, which CI has not. It records the profile each set runs under and echoes the batch."""

    calls: list = []

    def __init__(self, engine):
        self.profile = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set_profile(self, index):
        self.profile = index

    def infer(self, feeds):
        RecordingRunner.calls.append((feeds["image"].shape[0], self.profile))
        return {"y": np.full((1,), feeds["image"].shape[0], np.float32)}


def test_engine_sets_run_under_their_profiles(monkeypatch, tmp_path):
    import sys
    import types

    from trtforge.verify import engine_check

    # polygraphy's modules replaced, not imported: importing polygraphy.backend.trt picks a TensorRT
    # family for the whole process (other tests in it build with TensorRT-RTX)
    common, trt = types.ModuleType("polygraphy.backend.common"), types.ModuleType("polygraphy.backend.trt")
    common.bytes_from_path = lambda path: b""
    trt.engine_from_bytes = lambda data: object()
    trt.TrtRunner = RecordingRunner
    for name, mod in (
        ("polygraphy", types.ModuleType("polygraphy")),
        ("polygraphy.backend", types.ModuleType("polygraphy.backend")),
        ("polygraphy.backend.common", common),
        ("polygraphy.backend.trt", trt),
    ):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(engine_check.be, "select", lambda backend: None)
    RecordingRunner.calls = []
    outputs, _ = engine_check.run_engine_sets(
        tmp_path / "m.engine", [feeds(b) for b in (4, 1, 2, 8)], "tensorrt", runs=1, profiles=PROFILES
    )
    assert [o["y"][0] for o in outputs] == [4, 1, 2, 8]
    assert RecordingRunner.calls[:4] == [(4, 1), (1, 0), (2, 1), (8, 1)]
    assert set(RecordingRunner.calls[4:]) == {(4, 1)}  # latency on the first set, under its profile
