"""The `backend` fixture: every snapshot test that takes it runs on file:// and on S3."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from evalpipe_tests.s3_server import moto_s3
from evalpipe_tests.snapshots.backends import Backend


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "file":
        yield Backend(url=(tmp_path / "store").as_uri(), root=tmp_path / "store")
    else:
        with moto_s3() as s3:
            yield Backend(url=s3.url("evalpipe/snapshots"), client=s3.client, s3=s3)
