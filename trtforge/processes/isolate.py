"""Run a stage in a child process and watch it.

A stage that the kernel kills (out of memory, SIGKILL) must not take trtforge with it silently:
an SD1.5-size UNet's verify stage was killed at 22.3 GiB with no message and no report. So every
stage that runs (a cache miss) runs in a forked child; the parent waits with wait4(), which
returns the child's own peak RSS even when it was killed, and turns a death by signal into a
`StageKilled` error that names the module, the stage, the signal and the peak. The child also
returns all its memory to the OS when it ends, so one stage's leftovers never add to the next.

Linux-only mechanics (fork, prctl); elsewhere the stage runs in-process.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtforge.errors import TrtforgeError

PR_SET_PDEATHSIG = 1
# imported once in the parent before the first fork so children share them instead of each paying
# the import (~0.5-1 s apiece on 2 cores); never torch or TensorRT: the parent stays light, and
# polygraphy picks its TensorRT family once per process, at import
SHARED_IMPORTS = ("numpy", "onnx", "onnx_graphsurgeon", "onnxruntime")


class StageKilled(TrtforgeError):
    """A stage's process died from a signal (the OOM killer sends SIGKILL)."""

    stage = "trtforge"
    exit_code = 2


class StageOverMemory(TrtforgeError):
    """A stage's process tree passed the memory budget (--max-memory): stopped before it could take
    the machine's last memory (and everything else on a shared build host with it). Exit 2."""

    stage = "trtforge"
    exit_code = 2


# the budget of every stage's process tree, in bytes: None = the default (budget()); set by the
# driver from --max-memory for the length of a build (driver/api.py, each --jobs worker)
MAX_MEMORY: int | None = None
# what the default budget leaves to trtforge's own process and the rest of the machine: a tenth of
# it, at least 1 GiB
MARGIN_SHARE, MARGIN_MIN = 0.10, 1 << 30
WATCH_S = 0.1  # how often the parent samples the stage's process-tree RSS


def budget() -> int | None:
    """The per-stage memory budget: --max-memory, else what the machine or its cgroup has, less a
    margin (None when neither can be read: no budget)."""
    if MAX_MEMORY is not None:
        return MAX_MEMORY
    have = machine_memory()
    return None if have is None else have - max(int(have * MARGIN_SHARE), MARGIN_MIN)


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/children") as f:
                out += [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        pass
    return out


def tree_rss(pid: int) -> int:
    """Bytes resident in `pid` and every process below it (VmRSS from /proc; 0 once it is gone)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            continue
        todo += _children(p)
    return total


def _kill_tree(pid: int) -> None:
    for p in [*_children(pid), pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Beside:
    """Work forked to run beside a stage (issue 25: verify's ONNX check while the engine builds).
    It is optional: where the two together pass the memory budget, the watcher stops it, not the
    stage (`dropped`: its tree's RSS then), and its stage later does the work itself."""

    pid: int
    r: int
    module: str
    stage: str
    dropped: int = 0

    def alive(self) -> bool:
        return self.pid > 0 and not self.dropped


def _read_watched(fd: int, pid: int, limit: int | None, beside: Beside | None = None) -> tuple[list[bytes], int]:
    """The child's result from the pipe, sampling its process tree's RSS meanwhile; a tree over
    `limit` is killed at once. Returns the chunks and the largest RSS seen above the limit (0:
    never over). Work running `beside` it counts towards the limit, and is stopped first."""
    import select

    chunks: list[bytes] = []
    over = 0
    while True:
        ready, _, _ = select.select([fd], [], [], WATCH_S if limit is not None else None)
        if ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return chunks, over
            chunks.append(chunk)
        if limit is not None and not over:
            rss = tree_rss(pid)
            extra = tree_rss(beside.pid) if beside is not None and beside.alive() else 0
            if beside is not None and extra and rss + extra > limit:
                beside.dropped = rss + extra
                _kill_tree(beside.pid)
            elif rss > limit:
                over = rss
                _kill_tree(pid)  # the pipe then reaches its end


class StageCrashed(Exception):
    """A bug inside the child: its traceback, re-raised in the parent (exit 1, traceback kept)."""


def _gib(kib: int) -> str:
    return f"{kib / 2**20:.2f} GiB"


def _child(fn: Callable[[], dict], w: int, torch_pool_lost: bool) -> None:
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # die with the parent
    except (OSError, AttributeError):
        pass
    if torch_pool_lost:
        # the caller (trtforge.build from a process that ran torch) had torch's OpenMP pool
        # running; its threads do not survive fork and the child's first parallel op would wait
        # for them forever. One thread: slower, never hung.
        sys.modules["torch"].set_num_threads(1)
    from trtforge.processes import progress

    progress._ACTIVE = None  # the parent's display thread (and its lock) did not survive the fork
    payload: tuple[str, Any]
    try:
        payload = ("ok", fn())
    except TrtforgeError as e:
        payload = ("error", e)
    except KeyboardInterrupt as e:  # Interrupted carries its signal: SIGTERM exits 143, not 130
        payload = ("interrupt", getattr(e, "signum", int(signal.SIGINT)))
    except OSError as e:  # a full disk under the stage's work folder: one line, not a traceback
        from trtforge.cache.store import write_error

        error = write_error(e, "the stage's work folder") if e.errno in (errno.ENOSPC, errno.EDQUOT) else None
        payload = ("error", error) if error is not None else ("bug", traceback.format_exc())
    except BaseException as e:  # noqa: BLE001 - a bug: its traceback travels to the parent
        payload = ("bug", "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    try:
        data = pickle.dumps(payload)
    except Exception as e:  # noqa: BLE001 - an unpicklable result is itself a bug
        data = pickle.dumps(("bug", f"stage result cannot be sent to the parent: {e!r}"))
    view = memoryview(data)
    while view:
        view = view[os.write(w, view) :]


def _prewarm() -> None:
    import importlib

    for name in SHARED_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _can_fork() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux")


def start_beside(fn: Callable[[], dict], *, module: str, stage: str) -> Beside | None:
    """fn() forked now, to run beside the next run_in_child(beside=...); None where this platform
    cannot fork (the work is then left to its stage). Collect it with finish_beside."""
    if not _can_fork():
        return None
    pid, r = _fork(fn)
    with contextlib.suppress(OSError, AttributeError):  # its result waits in the pipe until read
        import fcntl

        fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, 1 << 20)
    return Beside(pid, r, module, stage)


def stop_beside(beside: Beside) -> None:
    """Stop work started beside a stage whose result is no longer wanted (the stage failed); a
    no-op once it was collected (its pid is reaped: never signal a number another process took)."""
    if beside.pid <= 0:
        return
    if not beside.dropped:
        _kill_tree(beside.pid)
    with contextlib.suppress(OSError):
        os.close(beside.r)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(beside.pid, 0)
    beside.pid = -1


def finish_beside(beside: Beside) -> dict | None:
    """The result of work started beside a stage; None when it was stopped to keep the memory
    budget. Raises as run_in_child does when it failed."""
    if beside.dropped:
        stop_beside(beside)
        return None
    try:
        return _collect(beside.pid, beside.r, beside.module, beside.stage, None)[0]
    finally:
        beside.pid = -1  # reaped


def run_in_child(fn: Callable[[], dict], *, module: str, stage: str, beside: Beside | None = None) -> tuple[dict, int]:
    """fn() in a forked child: (its result, the child's peak RSS in KiB). Its TrtforgeError is
    re-raised here; a death by signal is StageKilled; a bug is StageCrashed with its traceback.
    `beside`: work already running next to it (start_beside), watched against the same budget."""
    if not _can_fork():
        return fn(), 0
    pid, r = _fork(fn)
    return _collect(pid, r, module, stage, beside)


def _fork(fn: Callable[[], dict]) -> tuple[int, int]:
    """fn() in a forked child writing its pickled result into a pipe: (child pid, read end)."""
    _prewarm()
    # torch loaded here: its OpenMP pool may be running (the CLI never loads torch in this
    # process; the Python API may run in one that has used it, a notebook's)
    torch_pool_lost = "torch" in sys.modules
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    from trtforge.processes.progress import active

    display = active()
    lock = display._lock if display is not None else None
    if lock is not None:
        lock.acquire()  # the live-line thread must not be mid-write (holding stderr) at the fork
    # the child's garbage collector must not walk the objects it inherits: a walk writes to each
    # object's header, and the kernel then copies every page holding one (a fork of a process
    # with torch loaded cost 118 ms of copying at its first full collection, frozen 6 ms)
    gc.freeze()
    pid = -1  # a fork that fails leaves this process as it was
    try:
        pid = os.fork()
    finally:
        if pid != 0:
            gc.unfreeze()  # this process collects its own objects as before
            if lock is not None:
                lock.release()
    if pid == 0:  # the child: never returns into the caller's stack
        code = 0
        try:
            os.close(r)
            _child(fn, w, torch_pool_lost)
        except BaseException:  # noqa: BLE001
            code = 70
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(w)
    return pid, r


def _collect(pid: int, r: int, module: str, stage: str, beside: Beside | None) -> tuple[dict, int]:
    reaped, limit = False, budget()
    try:
        try:
            chunks, over = _read_watched(r, pid, limit, beside)
        finally:
            os.close(r)
        _, status, usage = os.wait4(pid, 0)
        reaped = True
    finally:
        if not reaped:  # interrupted while waiting: the child must not outlive this build
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    peak = usage.ru_maxrss
    if limit is not None and (over or peak * 1024 > limit):
        # over: stopped while it ran; else it finished over the budget between two samples (its
        # result is not kept either: the budget holds whatever the timing)
        how = (
            f"was stopped at {_gib(max(over, peak * 1024) // 1024)} RSS"
            if over
            else f"finished at a peak of {_gib(peak)} RSS"
        )
        raise StageOverMemory(
            f"stage '{stage}' passed its memory budget of {_gib(limit // 1024)} and {how}",
            where=stage,
            module=module,
            hint="nothing was published and the cache is intact; raise the budget with --max-memory SIZE "
            "(default: the machine's or cgroup's memory less a margin) or free memory, then build again",
        )
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        cause = (
            "the kernel's out-of-memory killer is the usual sender (see dmesg)"
            if sig == signal.SIGKILL
            else "it was sent from outside trtforge"
        )
        raise StageKilled(
            f"stage '{stage}' was killed by {sig.name} at a peak of {_gib(peak)} RSS; {cause}",
            where=stage,
            module=module,
            hint="nothing was published and the cache is intact; free memory or use a "
            "machine with more, then build again",
        )
    if not chunks:
        raise StageCrashed(
            f"stage '{stage}' of module '{module}' exited with status {os.WEXITSTATUS(status)} and sent no result"
        )
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "ok":
        return value, peak
    if kind == "error":
        raise value
    if kind == "interrupt":
        from trtforge.processes.interrupts import Interrupted

        raise Interrupted(value or signal.SIGINT)
    raise StageCrashed(f"stage '{stage}' of module '{module}' failed in its process:\n{value}")


def machine_memory() -> int | None:
    """Bytes this process tree may use: the smaller of MemTotal and a cgroup v2 limit."""
    sizes = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                sizes.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    for path in _cgroup_limits():
        try:
            limit = path.read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # cgroup v1 writes "no limit" as ~2^63
            sizes.append(int(limit))
    return min(sizes) if sizes else None


def _cgroup_limits() -> list[Path]:
    """memory.max of this process's cgroup v2 and every cgroup above it, and cgroup v1's limit."""
    root = Path("/sys/fs/cgroup")
    out = [root / "memory.max", root / "memory" / "memory.limit_in_bytes"]
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::/"):
                parts = [p for p in line[4:].split("/") if p]
                out += [root.joinpath(*parts[:i], "memory.max") for i in range(len(parts), 0, -1)]
    except OSError:
        pass
    return out
