"""The snapshot tests' `backend` fixture: every retention test that takes it runs on file://
and on S3 (moto's server on 127.0.0.1)."""

from evalpipe_tests.snapshots.conftest import backend

__all__ = ["backend"]
