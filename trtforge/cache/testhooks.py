"""Test hooks: fault injection at named points, for the crash and disk-full tests only.

A real crash (SIGKILL) and a real full disk cannot be timed from outside a process precisely
enough to land inside each step, so the tests name the step through the environment:

    TRTFORGE_TEST_KILL_AT=<point>    the process SIGKILLs itself at <point> (no cleanup runs)
    TRTFORGE_TEST_ENOSPC_AT=<point>  an OSError(ENOSPC) is raised at <point>, as a full disk would
    TRTFORGE_TEST_SIGINT_AT=<point>  the process sends itself SIGINT at <point> (as Ctrl-C would)
    TRTFORGE_TEST_SIGTERM_AT=<point> the process sends itself SIGTERM at <point>
    TRTFORGE_TEST_KILL_PARENT_AT=<point>  a --jobs worker (or a stage's child of one) SIGKILLs the
                                     `trtforge build` that started the worker, at <point>
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
earlier stages' records are stored), `work:<name>` (inside a stage's work, in its child process:
export after the FP32 reference, graph_passes after its passes ran, precision_rules after the rules
selected, build inside TensorRT's builder (its progress monitor's first callback), verify after the
ONNX checks), `remote:record:<name>` (a stage's blobs are uploaded to the remote cache, its record
not yet), `remote:atomic:<blob|record|key|deps>` (an object written under its temp name on a
filesystem remote, not yet renamed).
    TRTFORGE_TEST_CORES=<n>          `--jobs` sees n usable cores (the worker tests need real
                                     workers on a 2-core machine, where --jobs caps to one)

Every hook is behind one switch, read once at import: unless TRTFORGE_TEST_HOOKS=1 is set (the
test suite's conftest sets it), `checkpoint` returns at once and no variable above is even read, so
a stray TRTFORGE_TEST_KILL_AT in a production environment cannot make a build kill itself.
"""

from __future__ import annotations

import errno
import os
import signal

SWITCH_ENV = "TRTFORGE_TEST_HOOKS"
ARMED = os.environ.get(SWITCH_ENV) == "1"
KILL_ENV = "TRTFORGE_TEST_KILL_AT"
ENOSPC_ENV = "TRTFORGE_TEST_ENOSPC_AT"
SIGNAL_ENVS = {"TRTFORGE_TEST_SIGINT_AT": signal.SIGINT, "TRTFORGE_TEST_SIGTERM_AT": signal.SIGTERM}
KILL_PARENT_ENV = "TRTFORGE_TEST_KILL_PARENT_AT"
PARENT: int | None = None  # set in a --jobs worker: the only process the kill-parent hook may kill


def _ancestor(pid: int, depth: int = 3) -> bool:
    """`pid` is this process's parent or grandparent (a worker, or a stage's child of a worker),
    read from /proc: never a process that merely reused the number."""
    me = os.getpid()
    for _ in range(depth):
        try:
            with open(f"/proc/{me}/stat") as f:
                me = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if me == pid:
            return True
    return False


PAUSE_ENV = "TRTFORGE_TEST_PAUSE_AT"
PAUSE_DIR_ENV = "TRTFORGE_TEST_PAUSE_DIR"


def cores() -> int | None:
    """TRTFORGE_TEST_CORES, when the hooks are armed; None otherwise."""
    value = os.environ.get("TRTFORGE_TEST_CORES") if ARMED else None
    return int(value) if value else None


def checkpoint(point: str, path: str | None = None) -> None:
    """`path`: the file an injected ENOSPC names (default: the point)."""
    if ARMED:
        _fire(point, path)


def _fire(point: str, path: str | None) -> None:
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(KILL_PARENT_ENV) == point and PARENT is not None and _ancestor(PARENT):
        # on the build's own stderr, which the test reads (a stage redirects this process's fd 2
        # to its log): it names a process the test must see gone
        with open(f"/proc/{PARENT}/fd/2", "w") as err:
            err.write(f"trtforge-test: worker {os.getpid()} kills its parent {PARENT}\n")
        os.kill(PARENT, signal.SIGKILL)
    for env, sig in SIGNAL_ENVS.items():
        if os.environ.get(env) == point:
            os.kill(os.getpid(), sig)  # the handler runs at the next bytecode, here
    if os.environ.get(ENOSPC_ENV) == point:
        raise OSError(errno.ENOSPC, f"No space left on device (test hook {ENOSPC_ENV}={point})", path or point)
    if os.environ.get(PAUSE_ENV) == point:
        folder = os.environ[PAUSE_DIR_ENV]
        with open(os.path.join(folder, "reached"), "w") as f:
            f.write(point)
        with open(os.path.join(folder, "go")) as f:
            f.read()
