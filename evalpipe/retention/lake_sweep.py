"""Sweeping what interrupted writes left behind: hidden `.*.partial` files and directories.

Every lake write (and every object a file:// snapshot target receives) goes to a hidden
`.<name>.<token>.partial` beside its target and is renamed into place when complete
(`evalpipe.core.atomic`), so one that outlived its writer is garbage. In the lake, a partial is
swept only when it is older than `partial_hours` AND, for a run's files, the run's commit lock
can be taken without waiting: an ingest that is committing that run holds it, and its partial
is left alone. In a file:// target, only partials older than the objects' grace period go, under
the sweep lease (`evalpipe.snapshots.leases`).
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


def find_partials(root: Path, now: float | None = None) -> list[Partial]:
    """Every hidden in-progress file or directory under `root`, with its age."""
    now = time.time() if now is None else now
    found: list[Partial] = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            if not (name.startswith(".") and name.endswith(PARTIAL_SUFFIX)):
                continue
            path = Path(dirpath, name)
            size, newest = _size_and_newest(path)
            key = next(
                (
                    p.split("=", 1)[1]
                    for p in path.relative_to(root).parts
                    if p.startswith("run_id=")
                ),
                None,
            )
            found.append(Partial(path, size, (now - newest) / 3600, key))
        dirnames[:] = [d for d in dirnames if not d.endswith(PARTIAL_SUFFIX)]
    return sorted(found, key=lambda p: str(p.path))


def sweep_partials(
    lake: Lake, partial_hours: float, now: float | None = None
) -> tuple[list[Partial], list[Partial]]:
    """Delete the lake partials old enough whose run no ingest is committing; returns those
    deleted and those left because their run's lock is held."""
    deleted, busy = [], []
    for partial in find_partials(lake.root, now):
        if partial.age_hours < partial_hours:
            continue
        with _unless_locked(lake, partial.run_key) as free:
            if free and partial.path.exists():
                _remove(partial.path)
                deleted.append(partial)
            elif not free:
                busy.append(partial)
    return deleted, busy


def is_busy(lake: Lake, partial: Partial) -> bool:
    """Whether an ingest holds the lock of the partial's run right now."""
    with _unless_locked(lake, partial.run_key) as free:
        return not free


def sweep_store_partials(root: Path, hours: float, now: float | None = None) -> list[Partial]:
    """Delete the temporary files older than `hours` under a file:// target's directory."""
    deleted = []
    for partial in find_partials(root, now):
        if partial.age_hours >= hours and partial.path.exists():
            _remove(partial.path)
            deleted.append(partial)
    return deleted


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


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
