"""A failed stage's log, kept where the user can read it: a failed stage has no cache entry."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from trtforge.cache.tempnames import temp_beside


def keep_failed_logs(cache_root: Path, module: str, stage: str, workdir: Path) -> Path | None:
    """Copy a failed stage's *.log (export.log, build.log) to <cache>/logs/<module>/<stage>.log,
    replacing the previous failure's: a failed stage has no cache entry to hold it. Written without
    following symlinks (a link planted at logs/<module> or at the log itself is replaced, never
    written through): folders opened O_NOFOLLOW, a temp file, then a rename."""
    logs = sorted(workdir.glob("*.log"))
    if not logs:
        return None
    try:
        _write_nofollow(cache_root, ("logs", module), f"{stage}.log", b"".join(p.read_bytes() for p in logs))
    except OSError:
        return None
    return cache_root / "logs" / module / f"{stage}.log"


def _write_nofollow(root: Path, folders: tuple[str, ...], name: str, data: bytes) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in folders:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        tmp = temp_beside(Path(name)).name
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as f:
                f.write(data)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a link, never follows it
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise
    finally:
        os.close(fd)
