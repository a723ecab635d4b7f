"""Rebuild the per-task `-metrics.json` / `-config.json` that old dumps lack, and audit new ones.

`metrics-all.jsonl` is sufficient: a task's `-metrics.json` is byte for byte its line, and its
`-config.json` is the line's `task_config`. Files the dump lacks are planned here with oe-eval's
names (the ingest commits them with the run's tables, under the lake's `artifacts/`); files it
has are compared (metrics by bytes, config as JSON) and every difference is reported. The
source dump is never written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from evalpipe.sources.olmes.reader import RunRecords, TaskRecord

CONFIG_INDENT = 2


def task_file_name(task_idx: int, task_name: str, kind: str) -> str:
    """oe-eval's `task_file_name`: `task-{idx:03d}-{task_name}-{kind}`, with `%`, `/` and NUL
    in the task name percent-encoded so that any name (`a/../b` included) stays one file
    inside the run's directory."""
    safe = task_name.replace("%", "%25").replace("/", "%2F").replace("\0", "%00")
    return f"task-{task_idx:03d}-{safe}-{kind}"


def config_bytes(record: TaskRecord) -> bytes:
    return json.dumps(
        record.record.get("task_config"), indent=CONFIG_INDENT, ensure_ascii=False
    ).encode()


@dataclass(frozen=True)
class Mismatch:
    """A per-task file in the dump that does not agree with `metrics-all.jsonl`."""

    task_name: str
    kind: str
    path: Path
    detail: str


@dataclass
class ReconstructionReport:
    written: list[str] = field(default_factory=list)
    compared: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _first_difference(a: bytes, b: bytes) -> str:
    for offset, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"bytes differ from offset {offset}"
    return f"lengths differ ({len(a)} vs {len(b)} bytes); one is a prefix of the other"


def _differing_keys(expected: object, actual: object) -> str:
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys = sorted(
            k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k)
        )
        return "keys differ: " + ", ".join(keys)
    return "values differ"


def _compare_metrics(record: TaskRecord, path: Path) -> Mismatch | None:
    actual = path.read_bytes()
    if actual == record.raw:
        return None
    return Mismatch(
        record.task_name, "metrics.json", path, _first_difference(record.raw or b"", actual)
    )


def _compare_config(record: TaskRecord, path: Path) -> Mismatch | None:
    try:
        actual = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Mismatch(record.task_name, "config.json", path, f"not valid JSON: {exc}")
    expected = record.record.get("task_config")
    if actual == expected and list(actual or {}) == list(expected or {}):
        return None
    return Mismatch(record.task_name, "config.json", path, _differing_keys(expected, actual))


def plan_reconstruction(run: RunRecords) -> tuple[dict[str, bytes], ReconstructionReport]:
    """Which files to write (name → bytes) and what the dump's own files disagree on."""
    files: dict[str, bytes] = {}
    report = ReconstructionReport()
    for record in run.records:
        if record.is_aggregate or record.source != "metrics-all":
            continue
        if record.task_idx is None or record.raw is None:
            report.skipped.append(record.task_name)
            continue
        existing = run.task_files.get(record.task_name)
        for kind, build, compare in (
            ("metrics.json", lambda r: r.raw, _compare_metrics),
            ("config.json", config_bytes, _compare_config),
        ):
            path = existing.get(kind) if existing else None
            if path is None:
                name = task_file_name(record.task_idx, record.task_name, kind)
                files[name] = build(record)
                report.written.append(name)
                continue
            report.compared += 1
            mismatch = compare(record, path)
            if mismatch is not None:
                report.mismatches.append(mismatch)
    return files, report
