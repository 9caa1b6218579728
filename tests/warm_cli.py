"""The console script, started warm: what `run_cli` uses.

A real `trtforge` process spends 3-5 s of each test before its first line of work: Python's start,
then in every export stage's child torch's import and the exporter's first-call set-up. Here one
helper process per test worker (the "zygote") imports the heavy third-party libraries once (never
trtforge, whose modules may read the environment at import, and never polygraphy or TensorRT,
whose family polygraphy picks at import), runs one tiny export to set the exporter up (on one
torch thread, so no OpenMP pool exists to be lost in a fork), keeps the exporter's operator
registry per opset instead of rebuilding it each export, freezes what it loaded for the garbage
collector, then forks one child per call. The child is set up as the console script's process
would be (argv, cwd, the whole environment, PYTHONPATH entries, sys.path[0] the script's folder, stdin /dev/null,
stdout and stderr to files) and runs `trtforge.cli:main`; its exit status (or death by signal)
comes back as a CompletedProcess.

What this does not exercise is the interpreter's start: `sitecustomize`, `.pth` files, import-time
environment. Tests of those call `run_console` (the real console script in a new process)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

TRTFORGE = str(Path(sys.executable).parent / "trtforge")
PRELOAD = (
    "numpy",
    "torch",
    "onnxscript",
    "onnx",
    "onnx_graphsurgeon",
    "onnxruntime",
    "click",
    # what every Hugging Face model class imports first (1.5 s), and diffusers' models
    "transformers.modeling_utils",
    "diffusers.models",
)

ZYGOTE = r"""
import atexit, gc, json, os, signal, sys, threading, traceback
BIN, PRELOAD = sys.argv[1], sys.argv[2].split(",")
sys.path[0] = BIN  # as the console script's: its own folder first, never the working directory
BASE_PATH = list(sys.path)
requests = os.fdopen(0, "r")
replies = os.fdopen(os.dup(1), "w", buffering=1)
null = os.open(os.devnull, os.O_RDWR)
os.dup2(null, 1)  # nothing the libraries print may reach the reply pipe
stderr = os.dup(2)
os.dup2(null, 2)
for name in PRELOAD:
    try:
        __import__(name)
    except Exception:
        pass


def warm_exporter():
    # the exporter's first call in a process imports its passes and tables (~1.2 s on 2 cores),
    # and every call builds its operator registry from torchlib anew (0.9 s under the profiler): here, once, the
    # registry kept per opset (the exporter reads it, it never changes it), so every export stage
    # forked below starts past both. One torch thread: no OpenMP pool is started here, none is
    # lost across the forks.
    import tempfile
    import torch
    from torch.onnx._internal.exporter import _constants, _registration

    torch.set_num_threads(1)
    build = _registration.ONNXRegistry.from_torchlib.__func__
    built = {}

    def from_torchlib(cls, opset_version=_constants.TORCHLIB_OPSET):
        if opset_version not in built:
            built[opset_version] = build(cls, opset_version)
        return built[opset_version]

    _registration.ONNXRegistry.from_torchlib = classmethod(from_torchlib)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).half().eval()
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        program = torch.onnx.export(
            model, (torch.ones(1, 4, dtype=torch.float16),), dynamo=True, opset_version=20, verbose=False
        )
        program.save(os.path.join(tmp, "warm.onnx"), external_data=True)


try:
    warm_exporter()
except Exception:
    pass
os.dup2(stderr, 2)
# what is loaded now is never collected in a child: no child's collector walks (and so copies)
# the pages of these objects (a fork of this process cost 254 ms of copying at its first full
# collection, frozen 12 ms)
gc.freeze()


def child(req):
    os.dup2(null, 0)
    os.dup2(os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
    os.dup2(os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    os.setpgid(0, 0)  # its own group: a timeout kills it and its stage children together
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    extra = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [BASE_PATH[0], *extra, *BASE_PATH[1:]]
    sys.argv = [req["argv0"], *req["args"]]
    code = 0
    try:
        from trtforge.cli import main

        main(req["args"], prog_name="trtforge")
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


for line in requests:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        requests.close()
        replies.close()
        child(req)
    try:
        os.setpgid(pid, pid)  # both sides set it: no moment where a kill of the group misses it
    except OSError:
        pass
    replies.write(json.dumps({"pid": pid}) + "\n")
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    replies.write(json.dumps({"pid": pid, "code": code}) + "\n")
"""


class Zygote:
    def __init__(self):
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.buffer = b""

    def _reply(self, timeout: float | None) -> dict | None:
        """The zygote's next reply line, None if none came within `timeout` seconds."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the warm CLI helper process died")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", ZYGOTE, str(Path(TRTFORGE).parent), ",".join(PRELOAD)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
            )
            self.buffer = b""
        return self.proc

    def run(self, args: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory(prefix="trtforge-cli-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            proc = self._start()
            request = {"args": args, "cwd": str(cwd), "env": env, "out": str(out), "err": str(err), "argv0": TRTFORGE}
            proc.stdin.write((json.dumps(request) + "\n").encode())
            pid = self._reply(None)["pid"]
            reply = self._reply(timeout)
            if reply is None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._reply(None)
                raise subprocess.TimeoutExpired([TRTFORGE, *args], timeout, out.read_text(), err.read_text())
            return subprocess.CompletedProcess(
                [TRTFORGE, *args], reply["code"], out.read_text(errors="replace"), err.read_text(errors="replace")
            )

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


_ZYGOTE = Zygote()


def run_warm(args: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return _ZYGOTE.run([str(a) for a in args], cwd, env, timeout)


def close() -> None:
    _ZYGOTE.close()
