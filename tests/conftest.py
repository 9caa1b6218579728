"""Shared test helpers. Tests are real: torch export, onnxruntime, TensorRT-RTX CPU builds.

Two lanes: `make test-fast` runs what is not marked `slow` (in-process, a minute), `make test` runs
everything on pytest-xdist workers (tests/scheduling.py: a module with a module-scoped fixture
stays on one worker). A test that runs the console script is marked slow (run_cli refuses otherwise
in the fast lane); a project several modules read is built once for all workers (`built_once`)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import pytest

# the one switch that arms the fault hooks (trtforge/cache/testhooks.py), before any trtforge import;
# the CLI processes the tests start inherit it
os.environ["TRTFORGE_TEST_HOOKS"] = "1"

from trtforge.driver.stages import STAGE_NAMES as STAGES  # noqa: E402  (the order, never copied here)

pytest_plugins = ["tests.scheduling"]  # how `make test` spreads tests over xdist workers

REPO = Path(__file__).resolve().parent.parent
TRTFORGE = str(Path(sys.executable).parent / "trtforge")
# the stages whose ONNX the verify stage checks against the FP32 reference, in order
ONNX_STAGES = STAGES[: STAGES.index("build")]
_SLOW_TEST = True  # whether the running test may run the console script (set per test)


def has_gpu() -> bool:
    from trtforge import backends as be

    return shutil.which("nvidia-smi") is not None and bool(be.gpus())


def pytest_collection_modifyitems(config, items):
    if has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)  # before its fixtures, module- and session-scoped ones included
def pytest_runtest_setup(item):
    """In the fast lane (`-m "not slow"`), a test not marked slow that runs the console script
    fails, naming the fix: that lane must stay in-process to stay under a minute."""
    global _SLOW_TEST
    fast_lane = "not slow" in (item.config.getoption("markexpr") or "")
    _SLOW_TEST = not fast_lane or item.get_closest_marker("slow") is not None


def built_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder `make(folder)` fills once per test session, shared by every xdist worker (the first
    to get the lock builds it, the others wait and reuse it). Users must only read it (copy it to
    change it). A failed `make` is not marked done, so the next user tries again."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, above each worker's own
    folder, done = base / f"shared-{name}", base / f"shared-{name}.done"
    with open(base / f"shared-{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                make(folder)
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


def _build_attn(root: Path) -> None:
    from tests.verify.faults import ATTN_TOPK_MANIFEST, faults_project

    faults_project(root, ATTN_TOPK_MANIFEST)
    proc = run_cli("build", "engines.toml", cwd=root)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="session")
def attn_built(tmp_path_factory) -> Path:
    """tests/verify/faults' attention module (ATTN_TOPK_MANIFEST) built and published once per
    run, for every xdist worker: copy it to change it (its cache also serves ATTN_MANIFEST up to
    the build stage, whose keys do not hold the verify settings)."""
    return built_once(tmp_path_factory, "attn", _build_attn)


def cache_problems(cache: Path) -> list[str]:
    """What `trtforge cache verify` reports for `cache` (and drops), run in this process: no
    Python start per check. [] when every blob matches its digest and every record is whole."""
    from trtforge.cache import Store
    from trtforge.cache.keys import set_memo_root
    from trtforge.cache.manage import verify_all

    try:
        return verify_all(Store(cache))
    finally:
        set_memo_root(None)  # the store set it: no later test in this process inherits it


def onnx_model(text: str) -> onnx.ModelProto:
    """A model from ONNX text (onnx.parser), checked."""
    model = onnx.parser.parse_model(text)
    onnx.checker.check_model(model)
    return model


def write_model(model: onnx.ModelProto, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "model.onnx"))
    return folder


def run_cli(*args, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """The console script's `main` in a new process, started warm (tests/warm_cli.py: no Python
    start, torch already imported; slow lane only). TRTFORGE_TEST_COLD_CLI=1 runs each call as
    `run_console` does, for a suspicion that the warm start hides something."""
    assert _SLOW_TEST, "this test runs the console script: mark it slow (pytest.mark.slow)"
    if os.environ.get("TRTFORGE_TEST_COLD_CLI") == "1":
        return run_console(*args, cwd=cwd, env=env, timeout=timeout)
    from tests.warm_cli import run_warm

    return run_warm(list(args), cwd, {**os.environ, **(env or {})}, timeout)


def run_console(*args, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """The console script, as a user runs it: a new Python process (its start, sitecustomize and
    import-time environment included)."""
    assert _SLOW_TEST, "this test runs the console script: mark it slow (pytest.mark.slow)"
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([TRTFORGE, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def pytest_sessionfinish(session, exitstatus):
    if "tests.warm_cli" in sys.modules:
        sys.modules["tests.warm_cli"].close()


def rng_array(shape, dtype=np.float32, seed=0, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)


@pytest.fixture
def example_project(tmp_path) -> Path:
    """A copy of the repo's examples and engines.toml in a temp folder (own cache, own engines/)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "engines.toml", tmp_path / "engines.toml")
    return tmp_path


def _build_examples(root: Path) -> None:
    shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "engines.toml", root / "engines.toml")
    first = run_cli("build", "engines.toml", "--json", cwd=root)
    assert first.returncode == 0, first.stderr
    (root / "first-build.json").write_text(first.stdout)


@pytest.fixture(scope="session")
def built_examples(tmp_path_factory):
    """One real build of the repo's example manifest (~10 s on an idle machine) for the whole run,
    every xdist worker included: (project folder, the build's JSON report). Tests may read it and
    run more commands in it, but must not edit engines.toml or the examples (write another
    manifest beside it instead)."""
    import json

    root = built_once(tmp_path_factory, "examples", _build_examples)
    return root, json.loads((root / "first-build.json").read_text())


class Pause:
    """A build stopped at a named checkpoint (TRTFORGE_TEST_PAUSE_AT, trtforge/cache/testhooks.py):
    start the build with `env`, `wait(proc)` until it is there, act, then `release()`. No sleep,
    no timing race."""

    def __init__(self, folder: Path, point: str):
        folder.mkdir(parents=True)
        for fifo in ("reached", "go"):
            os.mkfifo(folder / fifo)
        self.folder, self.point = folder, point
        self.env = {"TRTFORGE_TEST_PAUSE_AT": point, "TRTFORGE_TEST_PAUSE_DIR": str(folder)}

    def wait(self, proc: subprocess.Popen) -> None:
        """Block until the build opens the `reached` FIFO; fail, not hang, if it exits first."""
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append((self.folder / "reached").read_text()), daemon=True)
        reader.start()
        while reader.is_alive():
            reader.join(1)
            if reader.is_alive() and proc.poll() is not None:
                (self.folder / "reached").open("w").close()  # release the reader
                pytest.fail(f"the build exited before {self.point}: {proc.communicate()}")
        assert got == [self.point], got

    def release(self) -> None:
        (self.folder / "go").write_text("go")
