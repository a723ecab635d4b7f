"""Writes that readers and crashes see whole or not at all.

Everything evalpipe publishes as a file (lake partitions, warehouse, report page, exports,
snapshot objects, reconstructed artifacts) is written to a hidden temporary name beside its
target, flushed to disk, renamed over the target, and the rename made durable by syncing the
directory. This module is the one implementation of that sequence.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = ".partial"
"""Hidden in-progress files end with this; readers, snapshots and sweeps recognise them by it."""


def partial_path(target: Path) -> Path:
    """A hidden temporary name beside `target` that no other writer will pick."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's) contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(source: Path, target: Path) -> None:
    """Rename a finished, synced `source` over `target` and make the rename itself durable."""
    os.replace(source, target)
    fsync_path(target.parent)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in `target`'s directory; when the block ends without an error,
    flush it to disk and rename it over `target`. On an error it is removed and `target` is
    left as it was. A `target` that exists as anything but a regular file (a directory, a device
    such as `/dev/null`, a pipe) is refused: renaming over it would replace it."""
    if target.exists() and not target.is_file():
        raise ValueError(
            f"{target}: not a regular file; evalpipe writes a file whole and renames it into "
            "place, which would replace this one"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(target)
    try:
        yield tmp
        fsync_path(tmp)
        replace_durably(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
