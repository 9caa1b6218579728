"""Publishing a file atomically, written once for every trtforge writer (the cache's blobs and
records, engines/, reports, signatures): temp file in the destination folder, fsync, os.replace,
fsync the folder. A crash leaves either the old file or the new one, never a torn one, and at
most a dot-named temp file that `sweep_temps` (cache/tempnames.py) removes once its writer is
dead."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from trtforge.cache.tempnames import owner_tag
from trtforge.cache.testhooks import checkpoint


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mkdir_durable(folder: Path) -> None:
    """mkdir -p, with the new entry fsynced into its parent: a file renamed into a folder that a
    power cut then forgets is lost with it."""
    if folder.is_dir():
        return
    mkdir_durable(folder.parent)
    with contextlib.suppress(FileExistsError):
        folder.mkdir()
        fsync_dir(folder.parent)


def install(tmp: Path | str, dest: Path, mode: int = 0o644) -> None:
    """Move a finished file (written, not yet synced) to `dest` durably: fsync it, set `mode`,
    rename it over `dest` (same filesystem), fsync the folder."""
    mkdir_durable(dest.parent)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    checkpoint(f"atomic:{dest.name}")
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def _write_atomically(dest: Path, fill: Callable[[BinaryIO], object]) -> None:
    # the temp file lives in the destination folder: os.replace is then a same-filesystem rename,
    # atomic, and a crash leaves only a dot-name that is never mistaken for the real file
    mkdir_durable(dest.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{owner_tag()}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
        install(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    _write_atomically(dest, lambda f: f.write(data))


def atomic_copy(src: Path, dest: Path) -> None:
    def fill(f: BinaryIO) -> None:
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f, 1 << 20)

    _write_atomically(dest, fill)


def atomic_write_if_changed(dest: Path, data: bytes) -> bool:
    """atomic_write_bytes unless `dest` already holds `data`: a no-op build writes (and fsyncs)
    nothing."""
    try:
        if dest.stat().st_size == len(data) and dest.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write_bytes(dest, data)
    return True
