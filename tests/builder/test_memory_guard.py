"""A build the machine plainly cannot hold is refused before it starts, naming the sizes. The
machine's size is replaced (monkeypatch of isolate.machine_memory): these machines have 24 GiB."""

from __future__ import annotations

import pytest

from trtforge.builder.engine import memory_guard
from trtforge.errors import BuildError
from trtforge.processes import isolate


def test_a_build_too_big_for_the_machine_is_refused(tmp_path, monkeypatch):
    (tmp_path / "model.onnx.data").write_bytes(b"\0" * (4 << 20))
    (tmp_path / "model.onnx").write_bytes(b"\0" * (64 << 20))  # the graph itself is not weights
    monkeypatch.setattr(isolate, "machine_memory", lambda: 8 << 20)
    with pytest.raises(
        BuildError, match=r"needs about 0\.5 GiB of memory \(0\.0 GiB of weights\) and this machine has 0\.0 GiB"
    ):
        memory_guard(tmp_path, "unet")
    monkeypatch.setattr(isolate, "machine_memory", lambda: 1 << 30)
    memory_guard(tmp_path, "unet")  # fits: no error


def test_machine_memory_reads_this_machine():
    size = isolate.machine_memory()
    assert size is not None and size > 1 << 30
