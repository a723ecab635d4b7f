"""Writes that readers and crashes see whole or not at all.

Everything evalpipe publishes as one file (warehouse, report page, exports, snapshot objects) is
written to a temporary name beside its target and renamed over it only once complete.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in `target`'s directory; when the block ends without an error,
    flush it to disk and rename it over `target`. On an error it is removed and `target` is
    left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
