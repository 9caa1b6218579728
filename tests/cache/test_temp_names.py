"""Every trtforge writer names its temp file one way (cache/tempnames.py): the stat memo, the file-set
memo, a failed stage's log, `trtforge export`'s copies and the store's own atomic writes. Each
writer is stopped between its write and its rename (the rename fails), and the file it leaves is
checked: the name says what it was writing and whose it is, so `sweep_temps` can tell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trtforge.cache import keys
from trtforge.cache.atomic import atomic_write_bytes
from trtforge.cache.tempnames import owner_dead, owner_tag, sweep_temps, temp_target
from trtforge.driver import copyout, logs


class RenameFails(OSError):
    """Test double for a writer killed between write and rename: os.replace raises."""


@pytest.fixture
def no_rename(monkeypatch) -> list[str]:
    """os.replace refuses; the names of the temp files it was asked to rename are recorded."""
    asked: list[str] = []

    def refuse(src, *_args, **_kwargs):
        asked.append(Path(src).name)
        raise RenameFails("killed before the rename")

    monkeypatch.setattr(os, "replace", refuse)
    return asked


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def _ours(name: str, final: str) -> None:
    assert temp_target(name) == final, name
    assert f".{owner_tag()}." in name  # this process: alive, so never swept
    assert not owner_dead(name)


def test_the_stat_memos_leftovers_carry_the_owner(tmp_path, no_rename):
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 100)
    memo = keys.DigestMemo(tmp_path / "statmemo")
    memo.digest(data)  # the memo write fails quietly: the digest is still right
    memo.digest_many([str(data)])
    left = _left(tmp_path / "statmemo")
    assert len(left) == 2, left
    for name in left:
        _ours(name, name[1:].split(".", 1)[0])


def test_a_failed_logs_and_an_export_copys_leftovers_carry_the_owner(tmp_path, no_rename):
    work = tmp_path / "work"
    work.mkdir()
    (work / "build.log").write_text("log")
    with pytest.raises(RenameFails):
        logs._write_nofollow(tmp_path, ("logs", "vit"), "build.log", b"log")
    src = tmp_path / "model.onnx"
    src.write_bytes(b"onnx")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RenameFails):
        copyout._copy_checked(src, out / "model.onnx", keys.hash_file(src))
    with pytest.raises(RenameFails):
        atomic_write_bytes(out / "index.json", b"{}")
    log, copy, store = no_rename
    _ours(log, "build.log")
    _ours(copy, "model.onnx")
    _ours(store, "index.json")
    # each removes its temp when it fails in-process: only a killed writer leaves one
    assert _left(tmp_path / "logs") == [] and _left(out) == []


def test_sweep_removes_only_dead_writers_files(tmp_path):
    folder = tmp_path / "statmemo"
    folder.mkdir()
    mine = folder / f".slot.{owner_tag()}.00000000.tmp"
    dead = folder / f".slot.{owner_tag().replace(str(os.getpid()), '999999999', 1)}.00000000.tmp"
    untagged = folder / ".slot.1234.tmp"  # the naming before tempnames: no host, never swept
    for p in (mine, dead, untagged):
        p.write_text("partial")
    assert sweep_temps(folder) == 1
    assert mine.exists() and not dead.exists() and untagged.exists()
