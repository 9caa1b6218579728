"""Optional signing: with a signing key in the environment, the build signs engines/index.json;
`trtforge verify --public-key` fails (exit 3) on a missing or wrong signature, so an engine
swapped with its sidecar and index digests recomputed (which plain `verify` cannot tell from the
real one) is caught."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.cache.conftest import build
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _keys(folder):
    key = ed25519.Ed25519PrivateKey.generate()
    private, public = folder / "signing.pem", folder / "signing.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return private, public


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_swapped_engine_with_recomputed_digests_fails_a_signed_verify(built_project, tmp_path):
    engines = built_project / "engines"
    private, public = _keys(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_public = _keys(tmp_path / "other")

    proc = run_cli("verify", "engines", "--public-key", str(public), cwd=built_project)
    assert proc.returncode == 3 and "index.json.sig is missing: the folder is not signed" in proc.stdout, proc.stdout

    proc, _ = build(built_project, env={"TRTFORGE_SIGNING_KEY_FILE": str(private)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((engines / "index.json.sig").read_text())["algorithm"] == "ed25519"
    assert run_cli("verify", "engines", "--public-key", str(public), cwd=built_project).returncode == 0
    proc = run_cli("verify", "engines", "--public-key", str(other_public), cwd=built_project)
    assert proc.returncode == 3 and "is not signed by this key" in proc.stdout, proc.stdout

    # the attacker: another engine, its sidecar and the index made to agree with it
    (target,) = [p for p in engines.iterdir() if p.is_dir()]
    engine, side_path = target / "mlp.engine", target / "mlp.json"
    engine.write_bytes(engine.read_bytes() + b"trojan")
    side = json.loads(side_path.read_text())
    side["files"]["mlp.engine"] = _sha(engine)
    side_path.write_text(json.dumps(side, indent=1, sort_keys=True))
    index = json.loads((engines / "index.json").read_text())
    files = index["modules"]["mlp"]["files"]
    files[f"{target.name}/mlp.engine"], files[f"{target.name}/mlp.json"] = _sha(engine), _sha(side_path)
    (engines / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    assert run_cli("verify", "engines", cwd=built_project).returncode == 0  # digests alone: passes
    proc = run_cli("verify", "engines", "--public-key", str(public), cwd=built_project)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "index.json.sig: failed:" in proc.stdout and "is not signed by this key" in proc.stdout

    # a key that cannot be read is one line, before anything is built
    proc, _ = build(built_project, env={"TRTFORGE_SIGNING_KEY_FILE": str(public)})
    assert proc.returncode == 2 and "not an unencrypted Ed25519 private key" in proc.stderr, proc.stderr
    proc = run_cli("verify", "engines", "--public-key", str(tmp_path / "none.pub"), cwd=built_project)
    assert proc.returncode == 2 and "cannot read the public key" in proc.stderr, proc.stderr
