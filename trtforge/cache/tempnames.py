"""Temp-file names: one naming for every trtforge writer, so a killed writer's leftovers can be
told from a live writer's files and swept (`sweep_temps`: the next build, `cache gc`), and
`trtforge verify` can name them as trtforge's own.

    .<final name>.<pid>@<host>-<pid namespace>.<random>.tmp

Imports nothing of trtforge: the stat memo (cache/keys.py) and the driver's log and copy writers
use it as the cache's store does."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path


def owner_tag() -> str:
    """pid@host in every temp name, so a later run can tell a dead writer's leftovers from a live
    writer's file (`owner_dead`) on a cache shared between machines."""
    return f"{os.getpid()}@{_HOST}"


def temp_beside(dest: Path) -> Path:
    """The one temp-file name of every trtforge writer: `.<final name>.<pid>@<host>.<random>.tmp`
    beside `dest`. The owner tag lets `sweep_temps` (the next build, `cache gc`) tell a killed
    writer's leftover from a live writer's file, and `trtforge verify` name it as trtforge's own."""
    return dest.with_name(f".{dest.name}.{owner_tag()}.{os.urandom(4).hex()}.tmp")


# `temp_beside`'s names and mkstemp's (`.<final>.<pid>@<host>.<8 of [a-z0-9_]>.tmp`)
TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?P<pid>\d+)@(?P<host>[^.@/]+)\.[A-Za-z0-9_]+\.tmp$")


def temp_target(name: str) -> str | None:
    """The file a trtforge temp file named `name` was being written as; None: not one of ours."""
    m = TEMP_NAME.match(name)
    return m.group("final") if m else None


def _host_tag() -> str:
    # the host name and the pid namespace: containers sharing a host name and a cache volume see
    # different pids, and a pid that is dead here may be alive there
    try:
        ns = f"-{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        ns = ""
    return (os.uname().nodename + ns).replace(".", "_").replace("@", "_")  # names split on "." and "@"


_HOST = _host_tag()


def owner_dead(name: str) -> bool:
    """True when `name` carries the pid@host tag of a process of this host that has exited."""
    for part in name.split("."):
        pid, sep, host = part.partition("@")
        if sep and pid.isdigit() and host == _HOST:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return _zombie(int(pid))
    return False


def _zombie(pid: int) -> bool:
    """An exited process its parent has not reaped yet (orphaned --jobs workers, until init reaps
    them): its files are as dead as it is."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def sweep_temps(folder: Path, prefix: str = ".") -> int:
    """Remove temp files and work folders under `folder` left by killed writers of this host."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix) or not owner_dead(entry.name):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        removed += 1
    return removed


def sweep_writer_temps(root: Path) -> int:
    """Leftovers of killed writers outside the cache's own folders: the stat memo's
    (statmemo/, statmemo/sets/) and failed stages' logs (logs/<module>/). A scan of names: a few
    thousand memo entries cost about a millisecond, and only dot-names are looked at further."""
    removed = sweep_temps(root / "statmemo") + sweep_temps(root / "statmemo" / "sets")
    try:
        logs = [e.path for e in os.scandir(root / "logs") if e.is_dir(follow_symlinks=False)]
    except OSError:
        logs = []
    return removed + sum(sweep_temps(Path(folder)) for folder in logs)
