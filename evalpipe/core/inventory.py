"""What a run's files look like right now (names, sizes, mtimes), for every source.

A scan reads no content: it is what the sensors run on every tick. The fingerprint changes when
any file does, so `run_id@fingerprint` names one state of a run, and a state that has been
ingested (or has failed) is not ingested again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from evalpipe.core.jsonl import DumpFormatError


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class RunInventory:
    """The files of one run directory, and whether the source considers them a complete run."""

    run_dir: Path
    files: tuple[FileEntry, ...]
    complete: bool = True

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for f in self.files:
            digest.update(f"{f.name}\0{f.size}\0{f.mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

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


def stat_files(run_dir: Path) -> tuple[FileEntry, ...]:
    """Every regular file directly in `run_dir`, sorted by name; raises `DumpFormatError` when
    the directory cannot be listed."""
    files = []
    try:
        with os.scandir(run_dir) as entries:
            for entry in entries:
                if entry.is_file():
                    st = entry.stat()
                    files.append(FileEntry(entry.name, st.st_size, st.st_mtime_ns))
    except OSError as exc:
        raise DumpFormatError(
            run_dir, None, f"cannot list run directory: {exc.strerror or exc}"
        ) from exc
    return tuple(sorted(files, key=lambda f: f.name))
