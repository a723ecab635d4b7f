"""A real S3 endpoint for tests: moto's server on 127.0.0.1, reached by boto3 over HTTP.

Moto keeps buckets in process-wide backends, not in the server object. Two consequences:
- `stop()` closes the listening socket, which is what an outage looks like to a client, while
  the stored objects survive; `start()` serves them again on the same port, so a test can cut
  the connection mid-transfer and retry against the same state;
- every moto server in the process sees the same buckets, hence one fresh bucket per use.

Use `with moto_s3() as s3:` anywhere, or the `s3_server` fixture (re-export it from a conftest).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

# Distinctive on purpose: tests grep logs and stored metadata for them.
TEST_ACCESS_KEY_ID = "AKIAEVALPIPETEST0042"
TEST_SECRET_ACCESS_KEY = "evalpipe-test-secret-XYZ"
TEST_REGION = "us-east-1"

# Variables that could point boto3 at real credentials or another endpoint during a test.
_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


class MotoS3:
    """A running moto S3 server with one bucket, plus a client that fails fast.

    The client makes a single attempt per request (no retries) so that a cut connection fails
    the operation at once instead of after backoff.
    """

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, self.port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{self.port}"
        self.running = True
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 1},
                connect_timeout=2,
                read_timeout=30,
            ),
        )
        self.client.create_bucket(Bucket=bucket)

    def url(self, prefix: str = "") -> str:
        """The snapshot target URL for `prefix` in this bucket."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def stop(self) -> None:
        """Take the endpoint down (connections are refused); stored objects are kept."""
        if self.running:
            self.running = False
            self._server.stop()

    def start(self) -> None:
        """Serve again on the same port, with the same buckets and objects."""
        if not self.running:
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            self._server.start()
            self.running = True

    def keys(self, prefix: str = "") -> dict[str, int]:
        """Every stored key under `prefix` with its size."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", ())}

    def _remove_bucket(self) -> None:
        for key in self.keys():
            self.client.delete_object(Bucket=self.bucket, Key=key)
        self.client.delete_bucket(Bucket=self.bucket)


@contextmanager
def moto_s3(bucket: str | None = None) -> Iterator[MotoS3]:
    """Start moto on a free 127.0.0.1 port, with dummy AWS_* credentials and AWS_ENDPOINT_URL
    pointing at it in os.environ for the duration (so `boto3.client("s3")` finds it too)."""
    env = {
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": TEST_REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    with mock.patch.dict(os.environ, env):
        for name in _CLEARED:
            os.environ.pop(name, None)
        werkzeug.setLevel(logging.WARNING)  # one access-log line per request is just noise
        s3 = MotoS3(bucket or f"evalpipe-test-{uuid.uuid4().hex[:12]}")
        os.environ["AWS_ENDPOINT_URL"] = s3.endpoint_url
        try:
            yield s3
        finally:
            s3.start()
            s3._remove_bucket()  # moto's state outlives the server: free the memory
            s3.stop()
            werkzeug.setLevel(werkzeug_level)


@pytest.fixture
def s3_server() -> Iterator[MotoS3]:
    with moto_s3() as s3:
        yield s3
