"""What a run's files look like right now (names, sizes, mtimes), for every source.

A scan reads no content: it is what the sensors run on every tick. The fingerprint changes when
any file does, so `run_id@fingerprint` names one state of a run, and a state that has been
ingested (or has failed) is not ingested again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from evalpipe.core.jsonl import DumpFormatError


class FileEntry(NamedTuple):
    """One file of a run as a stats-only scan sees it (a tuple: the sensor builds one per file
    of every run each tick, hundreds of thousands at 10,000 runs)."""

    name: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class RunInventory:
    """The files of one run directory, and whether the source considers them a complete run."""

    run_dir: Path
    files: tuple[FileEntry, ...]
    complete: bool = True
    problems: tuple[str, ...] = ()
    """Entries refused without being read (a symlink leaving the root, a FIFO, an unlistable
    directory): the run fails with these messages until they are fixed."""

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(
            "".join(f"{name}\0{size}\0{mtime}\n" for name, size, mtime in self.files).encode()
        )
        for problem in self.problems:
            digest.update(f"!{problem}\n".encode())
        return digest.hexdigest()[:16]

    def refuse_problems(self) -> None:
        """Raise `DumpFormatError` naming the first refused entry, if any."""
        if self.problems:
            raise DumpFormatError(self.run_dir, None, "; ".join(self.problems))

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def newest_mtime(self) -> float:
        return max((f.mtime_ns for f in self.files), default=0) / 1e9

    def settled(self, now: float, settle_seconds: float) -> bool:
        """Complete and untouched for `settle_seconds`: safe to ingest without catching a half-write."""
        return self.complete and now - self.newest_mtime >= settle_seconds


@dataclass(frozen=True)
class RunScan:
    """A run found under a source's root, with its current inventory."""

    source: str
    run_id: str
    inventory: RunInventory

    @property
    def ingest_key(self) -> str:
        """Identifies this run *in this state*: a new key means there is something to ingest."""
        return f"{self.run_id}@{self.inventory.fingerprint}"


@dataclass(frozen=True)
class RootScan:
    """Every run found under a source's root, and what was skipped there and why."""

    runs: list[RunScan]
    skipped: list[str]


def stat_files(
    run_dir: Path, root: Path, keep: Callable[[str], bool] | None = None
) -> tuple[tuple[FileEntry, ...], tuple[str, ...]]:
    """Every regular file directly in `run_dir` (sorted by name) and the entries refused
    without being opened: symlinks that resolve outside `root`, special files (FIFOs, sockets,
    devices, whose reading could hang or leak), or the directory itself when it cannot be
    listed. A symlink to a regular file inside `root` counts as that file. `keep`, when given,
    limits both to the entry names it accepts (several runs can share one directory)."""
    files, problems = [], []
    try:
        with os.scandir(run_dir) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if keep is not None and not keep(entry.name):
                    continue
                if entry.is_file(follow_symlinks=False):  # the common case, no questions
                    st = entry.stat(follow_symlinks=False)
                    files.append(FileEntry(entry.name, st.st_size, st.st_mtime_ns))
                    continue
                problem = _refusal(entry, root)
                if problem:
                    problems.append(problem)
                elif entry.is_file():
                    st = entry.stat()
                    files.append(FileEntry(entry.name, st.st_size, st.st_mtime_ns))
    except OSError as exc:
        problems.append(f"cannot list run directory: {exc.strerror or exc}")
    return tuple(files), tuple(problems)


def _refusal(entry: os.DirEntry, root: Path) -> str | None:
    """Why `entry` must not be read, or None. Only a symlink needs a Path (the sensor stats
    every file of every run each tick, so the common case stays on the DirEntry)."""
    if entry.is_symlink():
        path = Path(entry.path)
        target = path.resolve()
        if not target.is_relative_to(root.resolve()):
            return f"{path.name} is a symlink to {target}, outside {root}; refused (copy it in)"
        if target.is_dir():
            return None
        if not target.is_file():
            return f"{path.name} is a symlink to {target}, which is not a regular file; refused"
        return None
    if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
        return None
    return f"{entry.name} is not a regular file (a FIFO, socket or device); refused unread"


def walk_directories(
    root: Path, root_kind: str, visit: Callable[[Path, list[os.DirEntry]], bool]
) -> list[str]:
    """Visit every directory below `root` (itself included), depth first, with its entries
    sorted by name; `visit` returns True to not descend further. Hidden directories (a leading
    `.`), symlinked directories and directories that cannot be listed are skipped and reported:
    one of them never stops the others from being visited. Returns the report, sorted."""
    if not root.is_dir():
        raise DumpFormatError(root, None, f"{root_kind} is not a directory")
    skipped: list[str] = []
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            skipped.append(f"{current}: cannot list directory ({exc.strerror or exc}); skipped")
            continue
        if visit(current, entries):
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                if entry.is_symlink() and entry.is_dir():
                    skipped.append(f"{entry.path}: a symlinked directory; skipped (not followed)")
            elif entry.name.startswith("."):
                skipped.append(f"{entry.path}: hidden directory; skipped")
            else:
                stack.append(Path(entry.path))
    return sorted(skipped)
