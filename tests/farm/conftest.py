"""A real S3-compatible server on localhost for the remote-cache tests: moto's standalone server
(`moto_server`, from moto[server]) in its own process, on a free port, with IAM authentication on,
so a wrong secret key is refused as AWS refuses it. Each test gets its own bucket; each "runner" is
a copy of the tiny project with its own local cache, pointed at that bucket."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cache.conftest import build, write_project

MOTO = str(Path(sys.executable).parent / "moto_server")
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(proc: subprocess.Popen) -> None:
    """Read the server's log until it says it is listening (no polling, no sleep); fail if it
    exits first."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "Running on" in line:
            return
    pytest.fail(f"moto_server exited before listening: {''.join(seen)[-2000:]}")


@pytest.fixture(scope="session")
def s3_server():
    """(endpoint URL, access key id, secret): a user created through IAM in the first three
    requests, after which moto authenticates every request (INITIAL_NO_AUTH_ACTION_COUNT)."""
    import boto3

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_up(proc)
        iam = boto3.client(
            "iam", endpoint_url=url, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="setup"
        )
        iam.create_user(UserName="runner")
        iam.put_user_policy(
            UserName="runner",
            PolicyName="cache",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
            ),
        )
        key = iam.create_access_key(UserName="runner")["AccessKey"]
        # the server's log is drained so a long session never blocks it on a full pipe
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield url, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class Remote:
    """One bucket on the server, and what a runner needs to use it."""

    url: str
    bucket: str
    key_id: str
    secret: str

    @property
    def cache_url(self) -> str:
        return f"s3://{self.bucket}/farm"

    def env(self, **extra) -> dict:
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "TRTFORGE_REMOTE_CACHE": self.cache_url,
            **extra,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )

    def keys(self) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="farm/")
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def records(self) -> dict[str, dict]:
        """stage -> the record document of each remote record (one per stage for one module)."""
        out = {}
        for k in self.keys():
            if k.startswith("farm/actions/") and k.endswith(".json") and not k.endswith(".key.json"):
                doc = json.loads(self.get(k))
                out[doc["stage"]] = doc
        return out


@pytest.fixture
def remote(s3_server) -> Remote:
    url, key_id, secret = s3_server
    r = Remote(url, f"farm-{uuid.uuid4().hex[:12]}", key_id, secret)
    r.client().create_bucket(Bucket=r.bucket)
    return r


@pytest.fixture
def tiny_project(tmp_path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def runners(tmp_path):
    """runners(n): n copies of the tiny project, each with its own local cache and engines/."""

    def make(n: int) -> list[Path]:
        return [write_project(tmp_path / f"runner{i}") for i in range(n)]

    return make


def farm_build(root: Path, remote: Remote, *args, **env):
    return build(root, *args, env=remote.env(**env))


def remote_of(report: dict, module: str = "mlp") -> dict:
    (mod,) = [m for m in report["modules"] if m["name"] == module]
    return mod.get("remote", {})


def copy_cache(src: Path, dest: Path) -> None:
    shutil.copytree(src / ".trtforge-cache", dest / ".trtforge-cache", symlinks=True)
