"""Sweeping what interrupted lake writes left behind: hidden `.*.partial` files and directories.

Every lake write goes to a hidden `.<name>.<token>.partial` beside its target and is renamed
into place when complete (`evalpipe.core.atomic`), so one that outlived its writer is garbage.
A partial is swept only when it is older than `partial_hours` AND, for a run's files, the run's
commit lock can be taken without waiting: an ingest that is still writing or committing that
run holds it, and its partial is left alone.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from evalpipe.core.atomic import PARTIAL_SUFFIX
from evalpipe.storage.lake import Lake


@dataclass(frozen=True)
class Partial:
    path: Path
    bytes: int
    age_hours: float
    run_key: str | None


def find_partials(lake: Lake, now: float | None = None) -> list[Partial]:
    """Every hidden in-progress file or directory under the lake, with its age."""
    now = time.time() if now is None else now
    found = []
    if not lake.root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(lake.root):
        for name in [*dirnames, *filenames]:
            if not (name.startswith(".") and name.endswith(PARTIAL_SUFFIX)):
                continue
            path = Path(dirpath, name)
            size, newest = _size_and_newest(path)
            key = next(
                (
                    p.split("=", 1)[1]
                    for p in path.relative_to(lake.root).parts
                    if p.startswith("run_id=")
                ),
                None,
            )
            found.append(Partial(path, size, (now - newest) / 3600, key))
        dirnames[:] = [d for d in dirnames if not d.endswith(PARTIAL_SUFFIX)]
    return sorted(found, key=lambda p: str(p.path))


def sweep_partials(lake: Lake, partial_hours: float, now: float | None = None) -> list[Partial]:
    """Delete the partials old enough whose run no ingest is committing; returns those deleted."""
    deleted = []
    for partial in find_partials(lake, now):
        if partial.age_hours < partial_hours:
            continue
        with _unless_locked(lake, partial.run_key) as free:
            if free and partial.path.exists():
                if partial.path.is_dir():
                    shutil.rmtree(partial.path)
                else:
                    partial.path.unlink()
                deleted.append(partial)
    return deleted


@contextmanager
def _unless_locked(lake: Lake, key: str | None) -> Iterator[bool]:
    """Hold the run's commit lock if nobody else does (True), else yield False at once."""
    if key is None:
        yield True
        return
    lock = lake.lock_file(key)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _size_and_newest(path: Path) -> tuple[int, float]:
    """Bytes and newest mtime of a file, or of a directory and everything in it."""
    st = path.stat()
    if not path.is_dir():
        return st.st_size, st.st_mtime
    size, newest = 0, st.st_mtime
    for child in path.rglob("*"):
        cst = child.stat()
        size += cst.st_size if child.is_file() else 0
        newest = max(newest, cst.st_mtime)
    return size, newest
