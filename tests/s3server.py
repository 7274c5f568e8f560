"""A local S3-compatible server for the tests: moto's standalone server (``moto[server]``,
in the ``test`` extra), started on a free port the way the Redis tests start redis-server.

Credentials are fake and come from the environment, as on a cluster: a Ray worker
inherits the environment its raylet had at ``ray.init``, so conftest's ``ray_session``
calls :func:`use_fake_credentials` before it starts Ray whenever a collected test uses
``s3_server``. The endpoint is not a secret and travels in ``lake.storage_options``
(with the Storage object, to every task and actor).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "raylake-test-key",
    "AWS_SECRET_ACCESS_KEY": "raylake-test-secret",
    "AWS_REGION": "us-east-1",
}
# Left out of the driver and workers: a developer's own profile or session token would
# be mixed with the fake pair above.
_CLEARED = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONDITIONAL_PUT")


def wants_s3(session: pytest.Session) -> bool:
    """True when a collected test uses the ``s3_server`` fixture."""
    return any("s3_server" in getattr(item, "fixturenames", ()) for item in session.items)


def use_fake_credentials() -> None:
    """Put the fake credentials into this process's environment (before ``ray.init``,
    so Ray's workers have them too)."""
    for name in _CLEARED:
        os.environ.pop(name, None)
    os.environ.update(FAKE_CREDENTIALS)


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint, an empty bucket, the lake storage options."""

    endpoint: str
    bucket: str

    @property
    def storage_options(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true",
                "AWS_REGION": FAKE_CREDENTIALS["AWS_REGION"]}

    def overrides(self, prefix: str = "lake") -> list[str]:
        """Config overrides for a lake here: ``lake.root=s3://<bucket>/<prefix>`` and
        the storage options."""
        return [f"lake.root=s3://{self.bucket}/{prefix}",
                *(f"+lake.storage_options.{k}={v}" for k, v in self.storage_options.items())]

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint,
                            region_name=FAKE_CREDENTIALS["AWS_REGION"])

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` in the bucket."""
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on a free local port with one bucket, stopped after."""
    import importlib.util

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install the test extra, which has moto[server] (.ci/run does)")
        pytest.skip("moto[server] is not installed (pip install -e '.[test]')")
    if os.environ.get("AWS_ACCESS_KEY_ID") != FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"]:
        use_fake_credentials()  # only this process: Ray started without them (see wants_s3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    server = S3Server(endpoint=f"http://127.0.0.1:{port}", bucket="raylake-test")
    try:
        created = False
        for _ in range(300):  # 30 s: the server imports all of moto first
            if proc.poll() is not None:  # it exited (port taken): no use waiting
                break
            try:
                server.client().create_bucket(Bucket=server.bucket)
                created = True
                break
            except Exception:  # botocore's connection errors: not listening yet
                time.sleep(0.1)
        if not created:
            pytest.fail(f"moto's S3 server on port {port} never answered (exit code "
                        f"{proc.returncode}, None: still running); its log:\n"
                        f"{log.read_text()[-2000:]}")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
