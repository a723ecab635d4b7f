"""Where VMEvalKit data roots are and what files they hold (stats only, nothing is read).

A data root is a directory with a `questions/` folder, found at any depth below
`EVALPIPE_DATASETS`; its path below that root is its key (the Dagster partition). Symlinked
directories are never followed, so a link cannot make the walk leave the root or loop.

An output experiment or evaluation folder the archive job removed locally leaves a hidden
stub beside it (`outputs/.<name>.evalpipe-archived.json`) listing its files with their sizes
and mtimes: the data root's inventory counts those files as present, so its fingerprint does
not change when an archived folder goes (the sensor sees no change) or comes back by restore.
Hidden folders of a removal or restore in progress (`.<name>.<id>.deleting`,
`.<name>.<token>.restoring`) are not listed: a part is either there or archived, never half.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from evalpipe.core.atomic import atomic_path
from evalpipe.core.inventory import FileEntry, RunInventory

QUESTIONS = "questions"
OUTPUTS = "outputs"
EVALUATIONS = "evaluations"
MANIFEST = "vmeval_dataset.json"
PART_AREAS = (OUTPUTS, EVALUATIONS)
"""Where the archive job's units are: each folder directly in outputs/ or evaluations/."""
ARCHIVED_SUFFIX = ".evalpipe-archived.json"
STUB_FORMAT = "evalpipe-archived/1"
TRANSIENT_SUFFIXES = (".deleting", ".restoring")


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
    listed by its own stat, never followed; the validator judges where it points), archived
    parts' files included as their stubs record them."""
    listed = list_files(data_root)
    present = {f.name for f in listed.files}
    problems = list(listed.problems)
    archived: list[FileEntry] = []
    for prefix, stub in archived_stubs(data_root):
        try:
            entries = read_stub(stub)
        except (OSError, ValueError) as exc:
            problems.append(f"{stub}: unreadable archive stub: {exc}")
            continue
        archived += [
            FileEntry(f"{prefix}/{e.name}", e.size, e.mtime_ns)
            for e in entries
            if f"{prefix}/{e.name}" not in present
        ]
    files = sorted([*listed.files, *archived], key=lambda f: f.name)
    return RunInventory(data_root, tuple(files), problems=tuple(problems))


def list_files(directory: Path) -> RunInventory:
    """Every file on disk below `directory` (relative posix names), stubs and transient
    folders of archiving left out."""
    files: list[FileEntry] = []
    problems: list[str] = []
    pending = [directory]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                listed = list(entries)
        except OSError as exc:
            problems.append(f"{current}: cannot list: {exc.strerror or exc}")
            continue
        for entry in listed:
            if entry.name.startswith(".") and (
                ARCHIVED_SUFFIX in entry.name or entry.name.endswith(TRANSIENT_SUFFIXES)
            ):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed since the listing
                continue
            if stat.S_ISDIR(st.st_mode):
                pending.append(Path(entry.path))
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                name = Path(entry.path).relative_to(directory).as_posix()
                files.append(FileEntry(name, st.st_size, st.st_mtime_ns))
    files.sort(key=lambda f: f.name)
    return RunInventory(directory, tuple(files), problems=tuple(problems))


def stub_path(part_dir: Path) -> Path:
    return part_dir.with_name(f".{part_dir.name}{ARCHIVED_SUFFIX}")


def archived_stubs(data_root: Path) -> list[tuple[str, Path]]:
    """(`outputs/<name>`, stub path) for each archived part's stub in the data root."""
    found = []
    for area in PART_AREAS:
        try:
            names = sorted(os.listdir(data_root / area))
        except OSError:
            continue
        for name in names:
            if name.startswith(".") and name.endswith(ARCHIVED_SUFFIX):
                part = name[1 : -len(ARCHIVED_SUFFIX)]
                found.append((f"{area}/{part}", data_root / area / name))
    return found


def missing_archived_parts(data_root: Path) -> list[str]:
    """`outputs/<name>` of each archived part whose folder is not on disk now."""
    return [p for p, _ in archived_stubs(data_root) if not (data_root / p).is_dir()]


def read_stub(stub: Path) -> list[FileEntry]:
    data = json.loads(stub.read_bytes())
    if not isinstance(data, dict) or data.get("format") != STUB_FORMAT:
        raise ValueError(f"not an {STUB_FORMAT} document")
    return [FileEntry(str(n), int(s), int(m)) for n, s, m in data["files"]]


def write_stub(part_dir: Path, archive_id: str, files: list[FileEntry]) -> None:
    """Record, durably and atomically, that `part_dir` is archived as `archive_id`."""
    body = {
        "format": STUB_FORMAT,
        "archive_id": archive_id,
        "files": [[f.name, f.size, f.mtime_ns] for f in files],
    }
    with atomic_path(stub_path(part_dir)) as tmp:
        tmp.write_text(json.dumps(body, indent=1) + "\n")
