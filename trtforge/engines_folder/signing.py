"""Optional signing of engines/index.json (Ed25519, through the `cryptography` package:
`pip install 'trtforge[sign]'`).

Digests catch accidents, not intent: anyone who can write the engines folder can swap an engine
and recompute its sidecar and index digests, and `trtforge verify` passes. With a signing key
configured, every build that writes the folder signs the exact bytes of index.json into
`index.json.sig`; `trtforge verify --public-key KEY` fails (exit 3) on a missing signature or one
that the key does not verify, so a swapped engine with recomputed digests is caught (the index
names every file's digest).

The key comes from the environment, never the manifest (which travels with the project):
`$TRTFORGE_SIGNING_KEY_FILE` names a PEM or OpenSSH Ed25519 private key file, or
`$TRTFORGE_SIGNING_KEY` holds the PEM text itself. `openssl genpkey -algorithm ed25519` or
`ssh-keygen -t ed25519` make one; the public key is PEM, OpenSSH (`ssh-ed25519 AAAA...`) or the
private key file itself.

    index.json.sig: {"format": 1, "algorithm": "ed25519", "public_key": "<base64 raw>",
                     "signature": "<base64 over index.json's bytes>"}
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from trtforge.engines_folder.index import SIG
from trtforge.errors import TrtforgeError

if TYPE_CHECKING:  # an optional dependency, imported where a key is used
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ENV_FILE = "TRTFORGE_SIGNING_KEY_FILE"
ENV_KEY = "TRTFORGE_SIGNING_KEY"
_INSTALL = "install the signing extra: pip install 'trtforge[sign]' (the cryptography package)"


def _crypto(where: str):
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise TrtforgeError("signing needs the cryptography package", where=where, hint=_INSTALL) from None
    return serialization, ed25519


def configured() -> bool:
    return bool(os.environ.get(ENV_FILE) or os.environ.get(ENV_KEY))


def signing_key() -> Ed25519PrivateKey | None:
    """The configured Ed25519 private key, or None when none is configured; a key that cannot be
    read is one line (exit 2), found before anything is built."""
    path, text = os.environ.get(ENV_FILE), os.environ.get(ENV_KEY, "")
    if not path and not text:
        return None
    where = f"${ENV_FILE} ({path})" if path else f"${ENV_KEY}"
    serialization, ed25519 = _crypto(where)
    try:
        data = Path(path).read_bytes() if path else text.encode()
    except OSError as e:
        raise TrtforgeError(
            f"cannot read the signing key: {e.strerror}", where=where, hint="name a readable file"
        ) from None
    key = None
    for load in (serialization.load_pem_private_key, serialization.load_ssh_private_key):
        try:
            key = load(data, password=None)
            break
        except (ValueError, TypeError):
            continue
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise TrtforgeError(
            "not an unencrypted Ed25519 private key (PEM or OpenSSH)",
            where=where,
            hint="make one with `openssl genpkey -algorithm ed25519` or `ssh-keygen -t ed25519 -N ''`",
        )
    return key


def _raw_public(key: Ed25519PublicKey) -> bytes:
    serialization, _ = _crypto("public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign_folder(out_dir: Path, key: Ed25519PrivateKey) -> bool:
    """Sign index.json's bytes into index.json.sig (written only when it changed); False when
    there is no index to sign."""
    from trtforge.cache.atomic import atomic_write_if_changed

    try:
        data = (out_dir / "index.json").read_bytes()
    except FileNotFoundError:
        return False
    doc = {
        "format": 1,
        "algorithm": "ed25519",
        "public_key": base64.b64encode(_raw_public(key.public_key())).decode(),
        "signature": base64.b64encode(key.sign(data)).decode(),
    }
    atomic_write_if_changed(out_dir / SIG, json.dumps(doc, indent=1, sort_keys=True).encode())
    return True


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM or OpenSSH public key file (or a private key file: its
    public half); anything else is one line (exit 2)."""
    where = f"--public-key {path}"
    serialization, ed25519 = _crypto(where)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TrtforgeError(
            f"cannot read the public key: {e.strerror}", where=where, hint="name a readable file"
        ) from None
    loaders = (
        lambda d: serialization.load_pem_public_key(d),
        lambda d: serialization.load_ssh_public_key(d),
        lambda d: serialization.load_pem_private_key(d, password=None).public_key(),
        lambda d: serialization.load_ssh_private_key(d, password=None).public_key(),
    )
    for load in loaders:
        try:
            key = load(data)
        except (ValueError, TypeError):
            continue
        if isinstance(key, ed25519.Ed25519PublicKey):
            return key
    raise TrtforgeError(
        "not an Ed25519 public key (PEM or OpenSSH)", where=where, hint="pass the public half of the signing key"
    )


def check_signature(folder: Path, public_key: Ed25519PublicKey) -> str | None:
    """Why index.json's signature does not hold for `public_key` (None: it holds)."""
    from cryptography.exceptions import InvalidSignature

    sig_path = folder / SIG
    try:
        doc = json.loads(sig_path.read_bytes())
        signature = base64.b64decode(doc["signature"], validate=True)
    except FileNotFoundError:
        return f"{sig_path} is missing: the folder is not signed; build with a signing key (${ENV_FILE})"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{sig_path} is damaged; build again with the signing key"
    try:
        public_key.verify(signature, (folder / "index.json").read_bytes())
    except (InvalidSignature, OSError):
        return (
            f"{folder / 'index.json'} is not signed by this key (changed since it was signed, or signed "
            "by another key); do not deploy it"
        )
    return None
