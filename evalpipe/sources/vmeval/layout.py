"""Where VMEvalKit data roots are and what files they hold (stats only, nothing is read).

A data root is a directory with a `questions/` folder, found at any depth below
`EVALPIPE_DATASETS`; its path below that root is its key (the Dagster partition). Symlinked
directories are never followed, so a link cannot make the walk leave the root or loop.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from evalpipe.core.inventory import FileEntry, RunInventory

QUESTIONS = "questions"
OUTPUTS = "outputs"
EVALUATIONS = "evaluations"
MANIFEST = "vmeval_dataset.json"


def find_data_roots(root: Path) -> tuple[list[Path], list[str]]:
    """Every data root below `root` (sorted), and what could not be listed. A data root's own
    folders are not searched further."""
    found: list[Path] = []
    skipped: list[str] = []
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                subdirs = sorted(
                    Path(e.path)
                    for e in entries
                    if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
                )
        except OSError as exc:
            skipped.append(f"{directory}: cannot list: {exc.strerror or exc}")
            continue
        if directory != root and any(d.name == QUESTIONS for d in subdirs):
            found.append(directory)
            continue
        pending.extend(reversed(subdirs))
    return sorted(found), skipped


def dataset_key(root: Path, data_root: Path) -> str:
    return data_root.relative_to(root).as_posix()


def inventory(data_root: Path) -> RunInventory:
    """Every file below the data root by relative posix path, with size and mtime (a symlink is
    listed by its own stat, never followed; the validator judges where it points)."""
    files: list[FileEntry] = []
    problems: list[str] = []
    pending = [data_root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                listed = list(entries)
        except OSError as exc:
            problems.append(f"{directory}: cannot list: {exc.strerror or exc}")
            continue
        for entry in listed:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed since the listing
                continue
            if stat.S_ISDIR(st.st_mode):
                pending.append(Path(entry.path))
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                name = Path(entry.path).relative_to(data_root).as_posix()
                files.append(FileEntry(name, st.st_size, st.st_mtime_ns))
    files.sort(key=lambda f: f.name)
    return RunInventory(data_root, tuple(files), problems=tuple(problems))
