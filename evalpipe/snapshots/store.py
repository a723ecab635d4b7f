"""Where snapshots are kept: a local directory or an S3 prefix, behind one small interface.

The snapshot logic (`evalpipe.snapshots.manifests`) only needs a handful of operations on keys relative to
the target root; keeping them here lets both backends give the same guarantees: a key is either
absent or holds complete bytes (atomic rename locally, single PUT / completed multipart upload on
S3), and transfers run with a bounded number of parallel connections.

Local files are read through `open_regular` only: a path checked to be a regular file may have
been swapped for a symlink (to /etc/passwd, say) or a FIFO since, and must not be followed or
block. `Store.holds` says whether a stored object provably has given content, so a snapshot
never reuses one that was altered in place: a directory re-hashes it; S3 compares the SHA-256
checksum it computed and verified itself when the object was uploaded (objects uploaded without
one, e.g. by older versions, are uploaded once more). `redact_credentials` keeps user:password
parts of URLs (e.g. an AWS_ENDPOINT_URL quoted by botocore) out of messages.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import ClientError
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster, OSUtils

from evalpipe.core.atomic import atomic_path

MiB = 1024 * 1024
CHUNK_SIZE = MiB
MAX_CONCURRENCY = 4
# Multipart above 8 MiB, at most 4 parts/files in flight across a whole batch: one manager per
# batch bounds the total, not the per-file, parallelism. "classic" keeps behaviour identical
# whether or not awscrt happens to be installed.
TRANSFER_CONFIG = TransferConfig(
    multipart_threshold=8 * MiB,
    multipart_chunksize=8 * MiB,
    max_concurrency=MAX_CONCURRENCY,
    preferred_transfer_client="classic",
)

ACCEPTED_FORMS = "file:///absolute/path or s3://bucket[/prefix]"
# scheme://userinfo@ : greedy up to the last "@" of the authority, as URL parsers split it
_USERINFO_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]*@")

OnBytes = Callable[[str, int], None]
"""Called with (key, bytes moved since the last call); may run on a transfer thread."""
OnDone = Callable[[str], None]
"""Called with a key once its transfer completed successfully; may run on a transfer thread."""


def _noop_bytes(key: str, n: int) -> None:
    """Default `OnBytes`."""


def _noop_done(key: str) -> None:
    """Default `OnDone`."""


@dataclass(frozen=True)
class SnapshotTarget:
    """A parsed snapshot location. `root` is a directory (file) or a bucket (s3)."""

    scheme: Literal["file", "s3"]
    root: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> SnapshotTarget:
        parts = urlsplit(url)
        if parts.scheme == "file" and parts.netloc in ("", "localhost"):
            path = unquote(parts.path)
            if path.startswith("/") and not parts.query and not parts.fragment:
                return cls("file", os.path.normpath(path))
        elif parts.scheme == "s3" and "@" in parts.netloc:
            # Never echo a URL that embeds credentials.
            raise ValueError(
                f"snapshot target s3://<redacted>@... must not embed credentials; "
                f"use the AWS_* environment variables. Accepted forms: {ACCEPTED_FORMS}"
            )
        elif parts.scheme == "s3" and parts.netloc and not parts.query and not parts.fragment:
            return cls("s3", parts.netloc, parts.path.strip("/"))
        raise ValueError(
            f"unsupported snapshot target {redact_credentials(repr(url))}; "
            f"accepted forms: {ACCEPTED_FORMS}"
        )

    @property
    def url(self) -> str:
        if self.scheme == "file":
            return Path(self.root).as_uri()
        return f"s3://{self.root}/{self.prefix}".rstrip("/")

    def uri(self, key: str) -> str:
        """The full URL of a key under this target, as shown to users and stored in metadata."""
        return f"{self.url}/{key}"


class Upload(NamedTuple):
    key: str
    path: Path
    size: int
    sha256: str


class Download(NamedTuple):
    key: str
    dest: Path
    size: int


class StoredObject(NamedTuple):
    """A listed key's size and when it was last written (seconds since the epoch)."""

    size: int
    modified: float


class Store(Protocol):
    """Key/value access to a snapshot target. Missing keys raise FileNotFoundError."""

    target: SnapshotTarget

    def exists(self, key: str) -> bool: ...

    def list_sizes(self, prefix: str) -> dict[str, int]: ...

    def list_objects(self, prefix: str) -> dict[str, StoredObject]: ...

    def delete(self, key: str) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def holds(self, up: Upload) -> bool: ...

    def read_chunks(self, key: str) -> Iterator[bytes]: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def put_files(
        self, uploads: Sequence[Upload], on_bytes: OnBytes = ..., on_done: OnDone = ...
    ) -> None: ...

    def get_files(self, downloads: Sequence[Download], on_bytes: OnBytes = ...) -> None: ...


class ContentMismatchError(OSError):
    """Bytes written do not hash to what they were expected to be."""


def write_atomically(
    dest: Path,
    chunks: Iterable[bytes],
    on_bytes: Callable[[int], None] | None = None,
    expect_sha256: str | None = None,
) -> tuple[str, int]:
    """Write `chunks` to `dest` via a temp file + fsync + rename; return (sha256, size).

    Readers (and a crash) see either the old file or the complete new one, never a prefix; with
    `expect_sha256`, bytes that hash differently never become visible at all.
    """
    digest, size = hashlib.sha256(), 0
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
        sha = digest.hexdigest()
        if expect_sha256 is not None and sha != expect_sha256:
            raise ContentMismatchError(f"{dest}: expected sha256 {expect_sha256}, got {sha}")
    return sha, size


def redact_credentials(text: str) -> str:
    """`text` with the user:password of every URL in it replaced by `***`: error messages quote
    endpoint URLs (AWS_ENDPOINT_URL) verbatim, credentials included."""
    return _USERINFO_RE.sub(r"\1***@", text)


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading, refusing a symlink (as its last component) or a special
    file: what was listed as a regular file may have been swapped since. O_NONBLOCK keeps a
    FIFO swapped in from hanging the open."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file; refused")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def iter_file(path: Path, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Stream a local regular file in chunks of at most `size` bytes."""
    with open_regular(path) as handle:
        while chunk := handle.read(size):
            yield chunk


def digest(chunks: Iterable[bytes]) -> tuple[str, int]:
    """The sha256 (hex) and size of a stream of bytes."""
    sha, size = hashlib.sha256(), 0
    for chunk in chunks:
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


class FileStore:
    """A directory. Temp files start with '.', so listings skip them."""

    def __init__(self, target: SnapshotTarget) -> None:
        self.target = target
        self.root = Path(target.root)

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def list_sizes(self, prefix: str) -> dict[str, int]:
        base = self.root / prefix
        sizes: dict[str, int] = {}
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith("."):
                    path = Path(dirpath, name)
                    sizes[path.relative_to(self.root).as_posix()] = path.stat().st_size
        return sizes

    def list_objects(self, prefix: str) -> dict[str, StoredObject]:
        """Like `list_sizes`, with each key's modification time (what a grace period counts)."""
        found: dict[str, StoredObject] = {}
        for key in self.list_sizes(prefix):
            try:
                st = (self.root / key).stat()
            except FileNotFoundError:
                continue  # deleted since it was listed
            found[key] = StoredObject(st.st_size, st.st_mtime)
        return found

    def delete(self, key: str) -> None:
        """Remove a key; one already gone is not an error (a sweep may be re-run)."""
        (self.root / key).unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def holds(self, up: Upload) -> bool:
        """Re-hash the stored copy: an object of the right size may have been altered in place.
        One that cannot be read as a regular file is not proven either: uploading replaces it."""
        path = self.root / up.key
        try:
            return digest(iter_file(path)) == (up.sha256, up.size)
        except OSError:
            return False

    def read_chunks(self, key: str) -> Iterator[bytes]:
        return iter_file(self.root / key)

    def put_bytes(self, key: str, data: bytes) -> None:
        write_atomically(self.root / key, [data])

    def put_files(
        self,
        uploads: Sequence[Upload],
        on_bytes: OnBytes = _noop_bytes,
        on_done: OnDone = _noop_done,
    ) -> None:
        """Copy each file, hashing what is written, so a source that changed since it was hashed
        is caught before its object becomes visible."""
        for up in uploads:
            write_atomically(
                self.root / up.key,
                iter_file(up.path),
                lambda n, k=up.key: on_bytes(k, n),
                expect_sha256=up.sha256,
            )
            on_done(up.key)

    def get_files(self, downloads: Sequence[Download], on_bytes: OnBytes = _noop_bytes) -> None:
        for down in downloads:
            write_atomically(
                down.dest, iter_file(self.root / down.key), lambda n, k=down.key: on_bytes(k, n)
            )


class _Subscriber(BaseSubscriber):
    """Forwards s3transfer progress to our callbacks and tells downloads their size (no HEAD)."""

    def __init__(self, key: str, size: int, on_bytes: OnBytes, on_done: OnDone) -> None:
        self._key, self._size, self._on_bytes, self._on_done = key, size, on_bytes, on_done

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._on_bytes(self._key, bytes_transferred)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        try:
            future.result()  # already done: returns at once, raises if the transfer failed
        except Exception:
            return  # the caller sees the failure through its own future.result()
        self._on_done(self._key)


class _RegularFilesOnly(OSUtils):
    """s3transfer's file access, reading uploads through `open_regular`."""

    def open(self, filename: str, mode: str) -> Any:
        return open_regular(Path(filename)) if mode == "rb" else super().open(filename, mode)


class S3Store:
    """An S3 (or S3-compatible) bucket + prefix, accessed through a caller-provided boto3 client.

    The client carries the credentials; this class never reads, logs or stores them. Objects are
    uploaded with ChecksumAlgorithm=SHA256: S3 checks the bytes it receives against it and keeps
    it (for a multipart upload, a SHA-256 of the parts' SHA-256s), which is what `holds` trusts.
    """

    def __init__(
        self, target: SnapshotTarget, client: Any, transfer_config: TransferConfig = TRANSFER_CONFIG
    ) -> None:
        self.target = target
        self.bucket = target.root
        self._client = client
        self._config = transfer_config
        self._base = f"{target.prefix}/" if target.prefix else ""

    def _key(self, key: str) -> str:
        return self._base + key

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _is_not_found(exc):
                return False
            raise
        return True

    def list_sizes(self, prefix: str) -> dict[str, int]:
        sizes: dict[str, int] = {}
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        for page in pages:
            for obj in page.get("Contents", ()):
                sizes[obj["Key"][len(self._base) :]] = obj["Size"]
        return sizes

    def list_objects(self, prefix: str) -> dict[str, StoredObject]:
        """Like `list_sizes`, with each key's LastModified (what a grace period counts)."""
        found: dict[str, StoredObject] = {}
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        for page in pages:
            for obj in page.get("Contents", ()):
                key = obj["Key"][len(self._base) :]
                found[key] = StoredObject(obj["Size"], obj["LastModified"].timestamp())
        return found

    def delete(self, key: str) -> None:
        """Remove a key; S3 answers a delete of an absent key with success too."""
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _get_body(self, key: str) -> Any:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(self.target.uri(key)) from exc
            raise

    def holds(self, up: Upload) -> bool:
        """Compare the checksum S3 verified on upload with the content's, without downloading."""
        try:
            head = self._client.head_object(
                Bucket=self.bucket, Key=self._key(up.key), ChecksumMode="ENABLED"
            )
        except ClientError as exc:
            if _is_not_found(exc):
                return False
            raise
        stored = head.get("ChecksumSHA256")
        if head.get("ContentLength") != up.size or not stored:
            return False
        stored = stored.split("-", 1)[0]  # a multipart checksum ends in -<parts> (not on moto)
        if stored == _b64(bytes.fromhex(up.sha256)):
            return True
        return up.size >= self._config.multipart_threshold and stored == self._parts_checksum(up)

    def _parts_checksum(self, up: Upload) -> str:
        """The checksum S3 keeps for `up.path` uploaded in parts with our transfer config."""
        part_size = ChunksizeAdjuster().adjust_chunksize(self._config.multipart_chunksize, up.size)
        parts = [hashlib.sha256(part).digest() for part in iter_file(up.path, part_size)]
        return _b64(hashlib.sha256(b"".join(parts)).digest())

    def get_bytes(self, key: str) -> bytes:
        body = self._get_body(key)
        try:
            return body.read()
        finally:
            body.close()

    def read_chunks(self, key: str) -> Iterator[bytes]:
        body = self._get_body(key)
        try:
            yield from body.iter_chunks(CHUNK_SIZE)
        finally:
            body.close()

    def put_bytes(self, key: str, data: bytes) -> None:
        self._client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ContentType="application/json"
        )

    def put_files(
        self,
        uploads: Sequence[Upload],
        on_bytes: OnBytes = _noop_bytes,
        on_done: OnDone = _noop_done,
    ) -> None:
        """Upload all files through one transfer manager; the first failure cancels the rest."""
        with create_transfer_manager(self._client, self._config, _RegularFilesOnly()) as manager:
            futures = [
                manager.upload(
                    str(up.path),
                    self.bucket,
                    self._key(up.key),
                    extra_args={"ChecksumAlgorithm": "SHA256"},
                    subscribers=[_Subscriber(up.key, up.size, on_bytes, on_done)],
                )
                for up in uploads
            ]
            for future in futures:
                future.result()

    def get_files(self, downloads: Sequence[Download], on_bytes: OnBytes = _noop_bytes) -> None:
        with create_transfer_manager(self._client, self._config) as manager:
            futures = [
                manager.download(
                    self.bucket,
                    self._key(down.key),
                    str(down.dest),
                    subscribers=[_Subscriber(down.key, down.size, on_bytes, _noop_done)],
                )
                for down in downloads
            ]
            for future in futures:
                future.result()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _is_not_found(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def default_s3_client() -> Any:
    """A boto3 S3 client from the standard AWS_* variables and files (incl. AWS_ENDPOINT_URL,
    AWS_RETRY_MODE, AWS_MAX_ATTEMPTS).

    Custom endpoints get path-style addressing because most S3-compatible servers (MinIO, Ceph,
    moto) do not serve bucket subdomains.
    """
    custom_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(s3={"addressing_style": "path"}) if custom_endpoint else None
    return boto3.client("s3", config=config)


def open_store(target: SnapshotTarget | str, client: Any = None) -> Store:
    """The store for `target`; `client` (a boto3 S3 client) is only used for s3:// targets."""
    if isinstance(target, str):
        target = SnapshotTarget.parse(target)
    if target.scheme == "file":
        return FileStore(target)
    return S3Store(target, client if client is not None else default_s3_client())
