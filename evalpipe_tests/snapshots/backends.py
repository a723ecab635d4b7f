"""What snapshot tests share: a small evalpipe home, and a target (file:// or moto's S3 over
HTTP) with raw access to what is stored there, for assertions."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalpipe.snapshots.manifests import SnapshotResult, take_snapshot
from evalpipe.snapshots.store import MiB, SnapshotTarget
from evalpipe_tests.s3_server import MotoS3

NOW = datetime(2025, 3, 14, 15, 9, 26, tzinfo=timezone.utc)
BASE_ID = "202503141509"
PREDICTIONS = "dumps/2025-03-14-olmo-7b/predictions.jsonl"
BIG = "lake/instances/model=olmo-7b/part-0.parquet"


def make_tree(home: Path, *, big: bool = False) -> dict[str, Path]:
    """A small evalpipe home: dumps, a lake (with a duplicate file) and reconstructed output."""
    rng = random.Random(7)
    parquet = rng.randbytes(40_000)
    files = {
        "dumps/2025-03-14-olmo-7b/metrics-all.jsonl": b'{"task": "arc_easy", "acc": 0.81}\n' * 40,
        PREDICTIONS: b'{"doc_id": 1, "pred": "A"}\n' * 300,
        "dumps/2025-03-14-olmo-7b/empty.txt": b"",
        "lake/results/model=olmo-7b/part-0.parquet": parquet,
        "lake/results/model=olmo-7b/part-0-copy.parquet": parquet,
        "reconstructed/olmo-7b/metrics-all.jsonl": b'{"task": "arc_easy"}\n' * 10,
    }
    if big:  # 20 MiB: three 8 MiB-threshold multipart parts on S3
        files[BIG] = rng.randbytes(20 * MiB)
    for rel, data in files.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(data)
    return {name: home / name for name in ("dumps", "lake", "reconstructed")}


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@dataclass
class Backend:
    """One snapshot target plus raw access to what is stored there, for assertions."""

    url: str
    client: Any = None
    s3: MotoS3 | None = None
    root: Path | None = None

    @property
    def prefix(self) -> str:
        return SnapshotTarget.parse(self.url).prefix + "/"

    def stored(self) -> dict[str, int]:
        if self.s3:
            return {k[len(self.prefix) :]: n for k, n in self.s3.keys(self.prefix).items()}
        assert self.root is not None
        files = self.root.rglob("*") if self.root.exists() else []
        return {p.relative_to(self.root).as_posix(): p.stat().st_size for p in files if p.is_file()}

    def read(self, key: str) -> bytes:
        if self.s3:
            return self.s3.client.get_object(Bucket=self.s3.bucket, Key=self.prefix + key)[
                "Body"
            ].read()
        assert self.root is not None
        return (self.root / key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        """Store `data` at `key`; on S3 with a SHA-256 checksum of `data` computed and verified by
        S3, as evalpipe's uploads carry: a planted object looks genuine to a checksum lookup."""
        if self.s3:
            self.s3.client.put_object(
                Bucket=self.s3.bucket,
                Key=self.prefix + key,
                Body=data,
                ChecksumAlgorithm="SHA256",
            )
        else:
            assert self.root is not None
            (self.root / key).write_bytes(data)

    def delete(self, key: str) -> None:
        if self.s3:
            self.s3.client.delete_object(Bucket=self.s3.bucket, Key=self.prefix + key)
        else:
            assert self.root is not None
            (self.root / key).unlink()

    def watch_object_writes(self) -> Callable[[], set[str]]:
        """Start watching data-object writes; the returned function lists those made since.

        S3: PUT / multipart-upload requests as sent on the wire. Directory: object files that
        are new or were replaced (a new inode, since every write is a rename into place).
        """
        if self.s3:
            written: set[str] = set()

            def record(params: dict[str, Any], **_: Any) -> None:
                key = params["Key"][len(self.prefix) :]
                if key.startswith("objects/"):
                    written.add(key)

            for op in ("PutObject", "CreateMultipartUpload"):
                self.s3.client.meta.events.register(f"before-parameter-build.s3.{op}", record)
            return lambda: set(written)
        before = self._object_inodes()
        return lambda: {k for k, ino in self._object_inodes().items() if before.get(k) != ino}

    def _object_inodes(self) -> dict[str, int]:
        assert self.root is not None
        return {k: (self.root / k).stat().st_ino for k in self.stored() if k.startswith("objects/")}


def snapshot(sources: dict[str, Path], backend: Backend, **kwargs: Any) -> SnapshotResult:
    kwargs.setdefault("now", NOW)
    return take_snapshot(sources, backend.url, client=backend.client, **kwargs)
