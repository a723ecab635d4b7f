"""Reader for OLMES / oe-eval dumps: run discovery, `metrics-all.jsonl`, per-task artifacts.

Pure Python (no Dagster): everything here is testable on a directory. See
`docs/formats/olmes.md` for the quirks handled: aggregates with a null `task_idx`,
exact duplicate lines, `task-NNN` prefixes reused across invocations (tasks are matched by name),
old-format runs whose tasks exist only as artifact files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from evalpipe.core.inventory import (
    RootScan,
    RunInventory,
    RunScan,
    stat_files,
    walk_directories,
)
from evalpipe.core.jsonl import (
    DumpFormatError,
    count_lines,
    decode_document,
    iter_jsonl,
)

SOURCE_NAME = "olmes"
"""The `runs.source` value, asset key prefix and partition set prefix of this source."""
METRICS_ALL = "metrics-all.jsonl"
ARTIFACT_KINDS = (
    "metrics.json",
    "config.json",
    "predictions.jsonl",
    "requests.jsonl",
    "recorded-inputs.jsonl",
)
TASK_FILE = re.compile(
    r"^task-(?P<idx>\d+)-(?P<task>.+)-(?P<kind>"
    + "|".join(re.escape(k) for k in ARTIFACT_KINDS)
    + r")$"
)
CURRENT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S UTC"

Source = Literal["metrics-all", "artifacts"]


def is_run_dir_listing(names: list[str]) -> bool:
    """A run directory holds `metrics-all.jsonl` or at least one predictions file."""
    return METRICS_ALL in names or any(
        n.startswith("task-") and n.endswith("-predictions.jsonl") for n in names
    )


def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory below `root`, at any depth, sorted (see `walk_dumps`)."""
    return walk_dumps(root)[0]


def walk_dumps(root: Path) -> tuple[list[Path], list[str]]:
    """Every run directory below `root`, at any depth, sorted, and what was skipped and why
    (`walk_directories`). Run directories are flat, so the walk does not descend into one."""
    found: list[Path] = []

    def visit(directory: Path, entries: list[os.DirEntry]) -> bool:
        if is_run_dir_listing([e.name for e in entries if not e.is_dir(follow_symlinks=False)]):
            found.append(directory)
            return True
        return False

    skipped = walk_directories(root, "dumps root", visit)
    return sorted(found), skipped


def run_id_for(root: Path, run_dir: Path) -> str:
    """Stable, readable identity of a run: its path relative to the dumps root, `/`-separated.
    A path found by walking `root` (symlinked directories are not followed) is relative to it
    as written; any other is compared after resolving both."""
    if ".." not in run_dir.parts and run_dir.is_relative_to(root):
        rel = run_dir.relative_to(root).as_posix()
    else:
        rel = run_dir.resolve().relative_to(root.resolve()).as_posix()
    if rel == ".":
        raise DumpFormatError(
            run_dir, None, "the dumps root itself is a run directory; point at its parent"
        )
    return rel


def scan_run(run_dir: Path, root: Path) -> RunInventory:
    """Stat every file of a run directory (names, sizes, mtimes); reads no content. Entries
    that must not be read (symlinks leaving `root`, special files) are listed as problems."""
    files, problems = stat_files(run_dir, root)
    names = [f.name for f in files] + [p.split(" ", 1)[0] for p in problems]
    return RunInventory(run_dir, files, is_run_dir_listing(names), problems)


@dataclass
class TaskFiles:
    """The artifact files of one task, found by parsing `task-NNN-<task_name>-<kind>` names."""

    task_name: str
    task_idx: int
    paths: dict[str, Path] = field(default_factory=dict)

    def get(self, kind: str) -> Path | None:
        return self.paths.get(kind)


@dataclass(frozen=True)
class Finding:
    """A soft problem worth a warning (not an error): conflicts resolved, duplicate prefixes."""

    kind: str
    path: Path
    message: str


def index_task_files(
    run_dir: Path, names: list[str] | None = None
) -> tuple[dict[str, TaskFiles], list[Finding]]:
    """Map task name → its files. The `task-NNN` prefix is not an identity and is ignored for matching.

    When one task name appears under two prefixes (a re-run), the newer file wins and a finding
    says so.
    """
    names = names if names is not None else sorted(os.listdir(run_dir))
    tasks: dict[str, TaskFiles] = {}
    findings: list[Finding] = []
    for name in names:
        match = TASK_FILE.match(name)
        if not match:
            continue
        task, kind, idx = match["task"], match["kind"], int(match["idx"])
        path = run_dir / name
        entry = tasks.setdefault(task, TaskFiles(task_name=task, task_idx=idx))
        previous = entry.paths.get(kind)
        if previous is not None:
            newer = max((previous, path), key=lambda p: p.stat().st_mtime_ns)
            findings.append(
                Finding(
                    "duplicate_task_file",
                    path,
                    f"task {task!r} has two {kind} files "
                    f"({previous.name}, {name}); using the newer {newer.name}",
                )
            )
            path = newer
        entry.paths[kind] = path
        if path.name == name:
            entry.task_idx = idx
    return tasks, findings


@dataclass(frozen=True)
class TaskRecord:
    """One task's record as it will be stored: parsed value plus where it came from."""

    task_name: str
    record: dict[str, Any]
    raw: bytes | None
    path: Path
    line: int | None
    source: Source
    task_idx: int | None

    @property
    def is_aggregate(self) -> bool:
        return self.source == "metrics-all" and self.task_idx is None


@dataclass
class MetricsAll:
    """The unique records of a `metrics-all.jsonl`, in file order, with what was dropped."""

    records: list[TaskRecord]
    duplicates_dropped: int
    findings: list[Finding]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, CURRENT_DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _require_task_name(path: Path, line: int | None, value: Any) -> str:
    if not isinstance(value, dict):
        raise DumpFormatError(path, line, f"expected a JSON object, got {type(value).__name__}")
    name = value.get("task_name")
    if not isinstance(name, str) or not name:
        raise DumpFormatError(
            path, line, "record has no 'task_name' (a non-empty string is required)"
        )
    return name


def read_metrics_all(path: Path) -> MetricsAll:
    """Unique records of `metrics-all.jsonl`, aggregates included.

    Exact duplicates (equal as key-sorted JSON, as datadec compares them) are dropped. Two
    different records for one task: the later `current_date` wins (then the later line) and a
    finding reports the conflict.
    """
    by_task: dict[str, TaskRecord] = {}
    seen: set[str] = set()
    findings: list[Finding] = []
    duplicates = 0
    for line_no, raw, value in iter_jsonl(path):
        name = _require_task_name(path, line_no, value)
        key = _canonical(value)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        task_idx = value.get("task_idx")
        if task_idx is not None and (isinstance(task_idx, bool) or not isinstance(task_idx, int)):
            raise DumpFormatError(
                path, line_no, f"'task_idx' must be an integer or null, got {task_idx!r}"
            )
        record = TaskRecord(name, value, raw.rstrip(b"\r"), path, line_no, "metrics-all", task_idx)
        previous = by_task.get(name)
        if previous is not None:
            record = _resolve_conflict(previous, record, findings)
        by_task[name] = record
    records = sorted(by_task.values(), key=lambda r: r.line or 0)
    return MetricsAll(records=records, duplicates_dropped=duplicates, findings=findings)


def _resolve_conflict(old: TaskRecord, new: TaskRecord, findings: list[Finding]) -> TaskRecord:
    old_date = _parse_date(old.record.get("current_date"))
    new_date = _parse_date(new.record.get("current_date"))
    keep_old = old_date is not None and (new_date is None or old_date > new_date)
    kept, dropped = (old, new) if keep_old else (new, old)
    findings.append(
        Finding(
            "conflicting_records",
            new.path,
            f"task {new.task_name!r} has different records on lines {old.line} and {new.line}; "
            f"kept line {kept.line} (current_date {kept.record.get('current_date')!r}), "
            f"dropped line {dropped.line}",
        )
    )
    return kept


def task_name_from_rows(files: TaskFiles) -> str:
    """An artifact-only task's name: the rows' own `task_name` if they carry one, else the file's."""
    for kind in ("requests.jsonl", "recorded-inputs.jsonl"):
        path = files.get(kind)
        if path is None:
            continue
        for _, _, value in iter_jsonl(path):
            if isinstance(value, dict) and isinstance(value.get("task_name"), str):
                return value["task_name"]
            break
    return files.task_name


def artifact_only_record(files: TaskFiles) -> TaskRecord:
    """A row for a task present only as artifacts (old dumps): its `-metrics.json` if one exists,
    else null scores with `num_instances` counted from its predictions."""
    metrics_path = files.get("metrics.json")
    if metrics_path is not None:
        raw = _read_bytes(metrics_path)
        value = decode_document(metrics_path, raw, utf8_error_line=1)
        name = _require_task_name(metrics_path, None, value)
        return TaskRecord(name, value, raw, metrics_path, None, "artifacts", files.task_idx)
    predictions = files.get("predictions.jsonl")
    name = task_name_from_rows(files)
    record: dict[str, Any] = {
        "task_name": name,
        "num_instances": count_lines(predictions) if predictions else None,
        "metrics": None,
        "task_idx": files.task_idx,
    }
    path = predictions or next(iter(files.paths.values()))
    return TaskRecord(name, record, None, path, None, "artifacts", files.task_idx)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DumpFormatError(path, None, f"cannot read: {exc.strerror or exc}") from exc


@dataclass
class RunRecords:
    """Everything the task-level tables need from one run directory."""

    run_dir: Path
    records: list[TaskRecord]
    task_files: dict[str, TaskFiles]
    duplicates_dropped: int
    findings: list[Finding]

    @property
    def aggregates(self) -> list[TaskRecord]:
        return [r for r in self.records if r.is_aggregate]

    @property
    def tasks(self) -> list[TaskRecord]:
        return [r for r in self.records if not r.is_aggregate]


def read_run(run_dir: Path) -> RunRecords:
    """All task records of a run: `metrics-all.jsonl` first, then tasks that exist only as files."""
    names = sorted(os.listdir(run_dir))
    task_files, findings = index_task_files(run_dir, names)
    records: list[TaskRecord] = []
    duplicates = 0
    if METRICS_ALL in names:
        metrics_all = read_metrics_all(run_dir / METRICS_ALL)
        records.extend(metrics_all.records)
        duplicates = metrics_all.duplicates_dropped
        findings.extend(metrics_all.findings)
    known = {r.task_name for r in records}
    for task_name, files in sorted(task_files.items(), key=lambda kv: (kv[1].task_idx, kv[0])):
        if task_name in known:
            continue
        record = artifact_only_record(files)
        if record.task_name in known:
            continue
        known.add(record.task_name)
        records.append(record)
    if not records:
        raise DumpFormatError(
            run_dir, None, "run directory holds no task records and no predictions"
        )
    return RunRecords(run_dir, records, task_files, duplicates, findings)


def evaluated_at(record: dict[str, Any]) -> datetime | None:
    """`current_date` as a UTC timestamp, or None when absent or unparseable."""
    return _parse_date(record.get("current_date"))


def iter_numeric_metrics(metrics: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Numeric entries of a `metrics` object, nested objects flattened with dots; booleans skipped."""
    if not isinstance(metrics, dict):
        return
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            yield name, float(value)
        elif isinstance(value, dict):
            yield from iter_numeric_metrics(value, prefix=f"{name}.")


def model_identity(
    run_dir: Path, records: list[TaskRecord]
) -> tuple[str | None, str | None, str | None]:
    """`(model, revision, model_hash)` from the records, falling back to `<org>_<model>__<rev>`."""
    model = revision = model_hash = None
    for r in records:
        config = r.record.get("model_config")
        if isinstance(config, dict):
            model = model or config.get("model")
            revision = revision or config.get("revision")
        model_hash = model_hash or r.record.get("model_hash")
    name = run_dir.name
    if model is None:
        model = name.split("__", 1)[0]
    if revision is None and "__" in name:
        revision = name.split("__", 1)[1]
    return model, revision, model_hash


def scan_dumps(root: Path) -> RootScan:
    """Every run directory under `root` with its inventory (stats only; no file is read), and
    what was skipped."""
    run_dirs, skipped = walk_dumps(root)
    runs = [RunScan(SOURCE_NAME, run_id_for(root, d), scan_run(d, root)) for d in run_dirs]
    return RootScan(runs, skipped)
