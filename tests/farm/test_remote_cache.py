"""The remote cache against a real S3-compatible server (moto_server on localhost, see conftest):
two runners share work, concurrent and killed uploads, a flipped byte, a wrong secret key."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from tests.cache.conftest import STAGES, popen_build, states
from tests.conftest import run_cli
from tests.farm.conftest import farm_build, remote_of

# what a cold build of a manifest without [targets] uploads: every stage's record (a declared
# target adds its release pointer, a TensorRT target its timing-cache pointer: test_targets, test_timing_cache)
UPLOADED = STAGES

pytestmark = pytest.mark.slow


def _engine(root) -> bytes:
    (engine,) = (root / "engines").rglob("mlp.engine")
    return engine.read_bytes()


def _assert_remote_consistent(remote) -> None:
    """Every remote record names blobs that are there, whole: never a record before its blobs."""
    keys = set(remote.keys())
    for stage, doc in remote.records().items():
        for name, o in doc["outputs"].items():
            blob = f"farm/blobs/{o['digest'][:2]}/{o['digest']}"
            assert blob in keys, f"remote {stage} record names a missing blob {name}"
            assert hashlib.sha256(remote.get(blob)).hexdigest() == o["digest"], f"remote blob {name} is not whole"


def test_second_runner_runs_no_stage(remote, runners):
    a, b = runners(2)
    proc, report = farm_build(a, remote)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(states(report).values()) == {"ok"}
    assert remote_of(report)["uploaded"] == list(UPLOADED)
    assert set(remote.records()) == set(UPLOADED)
    _assert_remote_consistent(remote)

    proc, report = farm_build(b, remote)  # its own, empty local cache
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(states(report).values()) == {"cached"}, "the second runner ran a stage"
    assert remote_of(report)["fetched"] == list(STAGES)
    assert remote_of(report)["uploaded"] == []
    assert _engine(b) == _engine(a)
    # and its local cache now answers alone: a third build asks the remote nothing
    proc, report = build_no_remote(b)
    assert set(states(report).values()) == {"cached"}


def build_no_remote(root):
    from tests.cache.conftest import build

    proc, report = build(root, "--no-remote")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, report


def _pause_dir(tmp_path):
    pause = tmp_path / "pause"
    pause.mkdir()
    for fifo in ("reached", "go"):
        os.mkfifo(pause / fifo)
    return pause


def _wait_reached(pause, proc) -> str:
    """Block until the build opens the `reached` FIFO at its checkpoint; fail if it exits first."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append((pause / "reached").read_text()), daemon=True)
    reader.start()
    while reader.is_alive():
        reader.join(1)
        if reader.is_alive() and proc.poll() is not None:
            (pause / "reached").open("w").close()
            pytest.fail(f"the build exited before its checkpoint: {proc.communicate()}")
    return got[0]


def test_concurrent_uploads_of_one_key(remote, runners, tmp_path):
    """Runner A stops with the build's blobs uploaded and its record not yet; runner B builds the
    same key and uploads it whole; A then uploads its record over B's. The remote stays
    consistent and a third runner builds nothing."""
    a, b, c = runners(3)
    pause = _pause_dir(tmp_path)
    proc_a = popen_build(
        a, env=remote.env(TRTFORGE_TEST_PAUSE_AT="remote:record:build", TRTFORGE_TEST_PAUSE_DIR=str(pause))
    )
    try:
        assert _wait_reached(pause, proc_a) == "remote:record:build"
        assert "build" not in remote.records()  # its blobs may be up; its record is not
        proc, report = farm_build(b, remote)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert states(report)["build"] == "ok"  # A's record was not there: B built the same key
        assert "build" in remote_of(report)["uploaded"]
        b_key = remote.records()["build"]["key"]
    finally:
        (pause / "go").write_text("go")
    out, err = proc_a.communicate(timeout=300)
    assert proc_a.returncode == 0, err[-2000:]
    assert remote.records()["build"]["key"] == b_key  # one key, written twice, whole each time
    _assert_remote_consistent(remote)
    proc, report = farm_build(c, remote)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(states(report).values()) == {"cached"}
    assert _engine(c) in (_engine(a), _engine(b))


def test_upload_killed_midway(remote, runners):
    """A runner SIGKILLed after uploading the build's blobs, before its record: the remote holds
    no build record; the next runner fetches the earlier stages, builds the rest, uploads it."""
    a, b = runners(2)
    proc, _ = farm_build(a, remote, TRTFORGE_TEST_KILL_AT="remote:record:build")
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert set(remote.records()) == {"export", "graph_passes", "precision_rules"}
    _assert_remote_consistent(remote)
    proc, report = farm_build(b, remote)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert remote_of(report)["fetched"] == ["export", "graph_passes", "precision_rules"]
    assert states(report)["build"] == "ok" and states(report)["verify"] == "ok"
    assert set(remote.records()) == set(UPLOADED)
    _assert_remote_consistent(remote)


@pytest.mark.parametrize("target", ["blob", "record"])
def test_flipped_byte_in_a_remote_object(remote, runners, target):
    """A flipped byte in the build's engine blob or in its record: a miss, reported, never used;
    the second runner builds that stage itself and its engine verifies."""
    a, b = runners(2)
    proc, _ = farm_build(a, remote)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = remote.records()["build"]
    digest = doc["outputs"]["model.engine"]["digest"]
    key = (
        f"farm/blobs/{digest[:2]}/{digest}" if target == "blob" else f"farm/actions/{doc['key'][:2]}/{doc['key']}.json"
    )
    data = bytearray(remote.get(key))
    data[len(data) // 2] ^= 0x01
    remote.put(key, bytes(data))

    proc, report = farm_build(b, remote)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert states(report)["build"] == "ok", "the damaged object was used"
    fetched = remote_of(report)["fetched"]
    assert fetched[:3] == ["export", "graph_passes", "precision_rules"] and "build" not in fetched
    assert "corrupt remote object ignored" in proc.stderr
    assert (f"build {doc['key'][:12]} model.engine" if target == "blob" else f"record {doc['key'][:12]}") in proc.stderr
    assert run_cli("verify", "engines", cwd=b).returncode == 0
    _assert_remote_consistent(remote)  # B's upload replaced what it found damaged


def test_wrong_secret_key(remote, runners):
    """One line, exit 2, the build still runs locally (engines published); with --require-remote
    it stops before any stage, nothing published."""
    (a,) = runners(1)
    proc, report = farm_build(a, remote, "--require-remote", AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trtforge: error: cache: remote cache s3://"), proc.stderr
    assert "access denied" in lines[0] and "Traceback" not in proc.stderr
    assert not (a / "engines").exists() and not list((a / ".trtforge-cache" / "actions").glob("*/*.json"))

    proc, report = farm_build(a, remote, AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("trtforge: error:")]
    assert len(errors) == 1 and "access denied" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert set(states(report).values()) == {"ok"}  # built locally all the same
    assert list((a / "engines").rglob("mlp.engine"))
    assert remote.keys() == []  # nothing reached the bucket


def test_missing_bucket(remote, runners):
    (a,) = runners(1)
    proc, _ = farm_build(a, remote, "--require-remote", TRTFORGE_REMOTE_CACHE="s3://no-such-bucket-x/farm")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("trtforge: error: cache: remote cache s3://no-such-bucket-x/farm: not found")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_read_only_consumer_uploads_nothing(remote, runners):
    a, b = runners(2)
    proc, report = farm_build(a, remote, TRTFORGE_REMOTE_CACHE_MODE="read-only")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(states(report).values()) == {"ok"}
    assert remote_of(report)["uploaded"] == [] and remote.keys() == []
    proc, report = farm_build(b, remote)  # a writer fills it
    assert remote_of(report)["uploaded"] == list(UPLOADED)
    before = remote.keys()
    proc, report = farm_build(a, remote, "--remote-read-only", "--force")
    assert proc.returncode == 0 and remote.keys() == before


def test_cache_push_pull_ls(remote, runners):
    """A cache built offline is pushed, listed and pulled by another runner, which then builds
    nothing and asks the remote nothing."""
    a, b = runners(2)
    proc, report = farm_build(a, remote, "--no-remote")
    assert proc.returncode == 0 and remote.keys() == []
    env = remote.env()
    pushed = run_cli("cache", "push", "--remote", cwd=a, env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith("pushed 5 record(s), 0 already there")
    again = run_cli("cache", "push", "--remote", cwd=a, env=env)
    assert again.stdout.startswith("pushed 0 record(s), 5 already there")
    listed = run_cli("cache", "ls", "--remote", cwd=b, env=env)
    rows = listed.stdout.splitlines()[1:-1]  # a header, then one line per record, then the total
    assert listed.returncode == 0 and sorted(ln.split()[2] for ln in rows) == sorted(UPLOADED), listed.stdout
    pulled = run_cli("cache", "pull", "--remote", cwd=b, env=env)
    assert pulled.returncode == 0 and pulled.stdout.startswith("pulled 5 record(s)"), pulled.stderr
    proc, report = farm_build(b, remote)
    assert set(states(report).values()) == {"cached"} and remote_of(report)["fetched"] == []
    wrong = run_cli("cache", "ls", "--remote", cwd=b, env={**env, "AWS_SECRET_ACCESS_KEY": "nope"})
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "access denied" in wrong.stderr


def test_file_share_upload_killed_before_rename(runners, tmp_path):
    """A network folder (file://) has no atomic PUT: each object is written under a temp name and
    renamed. A runner killed with an engine written under its temp name leaves no object under a
    final name that is not whole, and the next runner does not use the leftover."""
    a, b = runners(2)
    share = tmp_path / "share"
    env = {"TRTFORGE_REMOTE_CACHE": f"file://{share}"}
    from tests.cache.conftest import build

    # killed at the first rename: the export's first blob, written whole under its temp name
    proc, _ = build(a, env={**env, "TRTFORGE_TEST_KILL_AT": "remote:atomic:blob"})
    assert proc.returncode == -9
    leftovers = [p for p in share.rglob(".*.tmp")]
    assert leftovers, "the temp object is where the kill left it"
    for blob in (share / "blobs").glob("*/*"):
        if not blob.name.startswith("."):
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    proc, report = build(b, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert states(report)["export"] == "ok"  # nothing whole was there to fetch
    for blob in (share / "blobs").glob("*/*"):
        if not blob.name.startswith("."):
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    proc, report = build(runners(3)[2], env=env)
    assert set(states(report).values()) == {"cached"}


TWO_MODULES = """
[modules.mlp_wide]
factory = "tinymods.mlp:make_mlp"
factory_args = { width = 24 }
inputs.x = { shape = [2, 8], dtype = "float16" }
outputs = ["y"]
"""


def test_assemble_from_cache(remote, runners):
    """`build --from-cache` on a machine that built nothing: the module a runner built is
    assembled (no stage runs) and verifies; the one nobody built is named, exit 3."""
    a, b = runners(2)
    proc, _ = farm_build(a, remote)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(b / "engines.toml", "a") as f:
        f.write(TWO_MODULES)
    proc, report = farm_build(b, remote, "--from-cache")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert set(states(report, "mlp").values()) == {"cached"}
    assert states(report, "mlp_wide")["export"] == "failed"
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("trtforge: error:")]
    assert len(errors) == 1 and "module 'mlp_wide'" in errors[0] and "not built yet" in errors[0], proc.stderr
    assert [st for name, st in states(report, "mlp_wide").items() if name != "export"] == ["not run"] * 4
    assert _engine(b) == _engine(a)
    assert run_cli("verify", "engines", cwd=b).returncode == 0
    assert not list((b / "engines").rglob("mlp_wide.engine"))


def test_unknown_url_scheme(runners):
    """A URL fsspec has no filesystem for: one line, exit 2, before any stage."""
    (a,) = runners(1)
    proc = run_cli("build", "--require-remote", cwd=a, env={"TRTFORGE_REMOTE_CACHE": "nosuch://bucket/x"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("trtforge: error: cache: remote cache nosuch://bucket/x: cannot open:")
    assert proc.stderr.count("\n") == 1 and not (a / "engines").exists()
