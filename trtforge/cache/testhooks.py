"""Test hooks: fault injection at named points, for the crash and disk-full tests only.

A real crash (SIGKILL) and a real full disk cannot be timed from outside a process precisely
enough to land inside each step, so the tests name the step through the environment:

    TRTFORGE_TEST_KILL_AT=<point>    the process SIGKILLs itself at <point> (no cleanup runs)
    TRTFORGE_TEST_ENOSPC_AT=<point>  an OSError(ENOSPC) is raised at <point>, as a full disk would
    TRTFORGE_TEST_PAUSE_AT=<point>   the process stops at <point> until the test lets it go, through
                                     two FIFOs in $TRTFORGE_TEST_PAUSE_DIR: it opens `reached` for
                                     writing (returns once the test reads it), then reads `go`
                                     (returns once the test writes it). No sleep, no timing race.

Points: `run:<name>` (inside a stage's own child process, as it starts: the kernel's OOM killer
as the parent sees it), `stage:<name>` (a stage wrote its outputs into its work folder, nothing published yet),
`put:<name>` (its blobs are in the store, its record not yet), `atomic:<file name>` (a temp file is
written and fsynced, not yet renamed), `publish:begin` (engines/index.json names the module's files
pending), `publish` (the engine is published, its sidecar not yet), `publish:sidecar` (the sidecar
is written, the index not yet final), `before:<name>` (a stage is about to look up its key; the
earlier stages' records are stored).
Unset variables cost one dict lookup; nothing else here runs in a normal build.
"""

from __future__ import annotations

import errno
import os
import signal

KILL_ENV = "TRTFORGE_TEST_KILL_AT"
ENOSPC_ENV = "TRTFORGE_TEST_ENOSPC_AT"
PAUSE_ENV = "TRTFORGE_TEST_PAUSE_AT"
PAUSE_DIR_ENV = "TRTFORGE_TEST_PAUSE_DIR"


def checkpoint(point: str) -> None:
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(ENOSPC_ENV) == point:
        raise OSError(errno.ENOSPC, f"No space left on device (test hook {ENOSPC_ENV}={point})", point)
    if os.environ.get(PAUSE_ENV) == point:
        folder = os.environ[PAUSE_DIR_ENV]
        with open(os.path.join(folder, "reached"), "w") as f:
            f.write(point)
        with open(os.path.join(folder, "go")) as f:
            f.read()
