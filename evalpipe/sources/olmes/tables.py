"""Task-level tables of one run (`runs`, `task_results`, `task_metrics`, `run_files`,
`task_choices`) from a dump.

Turns what `formats.olmes` reads into rows shaped by `lake.SCHEMAS`. Nested payloads become
JSON text with key order kept (`ensure_ascii=False`, default separators), so `json.loads` of a
column gives back the source value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from evalpipe.core.inventory import RunInventory
from evalpipe.core.jsonl import iter_jsonl, json_text
from evalpipe.sources.olmes.reader import (
    METRICS_ALL,
    SOURCE_NAME,
    TASK_FILE,
    Finding,
    RunRecords,
    TaskFiles,
    TaskRecord,
    evaluated_at,
    iter_numeric_metrics,
    model_identity,
    read_run,
)
from evalpipe.storage.schemas import SCHEMAS

JSON_COLUMNS = ("model_config", "task_config", "compute_config", "beaker_info", "metrics")


@dataclass
class RunTables:
    """One run's task-level tables, ready for the lake, plus what a person should be told."""

    run_id: str
    runs: pa.Table
    task_results: pa.Table
    task_metrics: pa.Table
    records: RunRecords

    @property
    def findings(self) -> list[Finding]:
        return self.records.findings


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def task_result_row(run_id: str, record: TaskRecord) -> dict[str, Any]:
    value = record.record
    task_config = value.get("task_config")
    metrics = value.get("metrics")
    primary_metric = task_config.get("primary_metric") if isinstance(task_config, dict) else None
    primary_score = metrics.get("primary_score") if isinstance(metrics, dict) else None
    row: dict[str, Any] = {
        "run_id": run_id,
        "task_name": record.task_name,
        "task_hash": value.get("task_hash"),
        "task_idx": record.task_idx,
        "is_aggregate": record.is_aggregate,
        "primary_metric": primary_metric if isinstance(primary_metric, str) else None,
        "primary_score": _float_or_none(primary_score),
        "num_instances": _int_or_none(value.get("num_instances")),
        "evaluated_at": evaluated_at(value),
        "source": record.source,
        "source_file": record.path.name,
        "source_line": record.line,
    }
    for column in JSON_COLUMNS:
        row[column] = json_text(value.get(column))
    return row


def task_metric_rows(run_id: str, record: TaskRecord) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "task_name": record.task_name, "metric": name, "value": number}
        for name, number in iter_numeric_metrics(record.record.get("metrics"))
    ]


def build_run_tables(
    run_id: str,
    run_dir: Path,
    *,
    records: RunRecords | None = None,
    fingerprint: str | None = None,
    now: datetime | None = None,
) -> RunTables:
    """One run directory's task-level tables (from `records` when the caller already parsed
    them). Raises `DumpFormatError` on bad input."""
    records = records if records is not None else read_run(run_dir)
    results = [task_result_row(run_id, r) for r in records.records]
    metrics = [row for r in records.records for row in task_metric_rows(run_id, r)]
    model, revision, model_hash = model_identity(run_dir, records.records)
    parts = run_id.split("/")
    run_row = {
        "run_id": run_id,
        "source": SOURCE_NAME,
        "dump": parts[0] if len(parts) > 1 else None,
        "model": model,
        "revision": revision,
        "model_hash": model_hash,
        "source_dir": str(run_dir),
        "n_tasks": len(records.tasks),
        "n_aggregates": len(records.aggregates),
        "duplicates_dropped": records.duplicates_dropped,
        "fingerprint": fingerprint,
        "ingested_at": now or datetime.now(timezone.utc),
    }
    return RunTables(
        run_id=run_id,
        runs=pa.Table.from_pylist([run_row], SCHEMAS["runs"]),
        task_results=pa.Table.from_pylist(results, SCHEMAS["task_results"]),
        task_metrics=pa.Table.from_pylist(metrics, SCHEMAS["task_metrics"]),
        records=records,
    )


def run_files_table(run_id: str, inventory: RunInventory) -> pa.Table:
    """The run's file inventory: which task and artifact kind each file is, with size and mtime."""
    rows = []
    for f in inventory.files:
        match = TASK_FILE.match(f.name)
        rows.append(
            {
                "run_id": run_id,
                "name": f.name,
                "task_name": match["task"] if match else None,
                "kind": match["kind"]
                if match
                else ("metrics-all" if f.name == METRICS_ALL else "other"),
                "size": f.size,
                "mtime": datetime.fromtimestamp(f.mtime_ns / 1e9, tz=timezone.utc),
            }
        )
    return pa.Table.from_pylist(rows, SCHEMAS["run_files"])


def task_choices_table(run_id: str, task_files: dict[str, TaskFiles]) -> pa.Table:
    """Answer choices per task, from the first predictions row: one `model_output` entry per
    choice for multiple-choice tasks; generative tasks carry a `continuation` instead."""
    rows = []
    for task_name, files in sorted(task_files.items()):
        path = files.get("predictions.jsonl")
        first = next(iter_jsonl(path), None) if path else None
        outputs = first[2].get("model_output") if first and isinstance(first[2], dict) else None
        if not isinstance(outputs, list):
            continue
        generative = any(isinstance(o, dict) and "continuation" in o for o in outputs)
        rows.append(
            {
                "run_id": run_id,
                "task_name": task_name,
                "n_choices": 0 if generative else len(outputs),
                "generative": generative,
            }
        )
    return pa.Table.from_pylist(rows, SCHEMAS["task_choices"])
