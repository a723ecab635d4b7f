"""Every integrity check of one run, evaluated together, and the run's resulting status.

The expected task set is recounted from the source files (not taken from the table builder), and
prediction counts come from the stored predictions partition, so a lake partition that lost rows
or a builder bug is caught rather than confirmed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa

from evalpipe.formats.jsonl import iter_jsonl
from evalpipe.formats.olmes import METRICS_ALL, index_task_files, read_run, task_name_from_rows
from evalpipe.integrity.gx_suites import (
    CHECK_PREDICTIONS,
    CHECK_REQUESTS,
    CHECK_TASK_RESULTS,
    frame_from_arrow,
    validate_predictions,
    validate_requests,
    validate_task_results,
)
from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.integrity.reconcile import (
    CHECK_AGGREGATE_MEMBERS,
    CHECK_AGGREGATES,
    CHECK_PREDICTION_COUNTS,
    CHECK_SOURCE_CONFLICTS,
    CHECK_TASK_ROWS,
    reconcile_aggregates,
    reconcile_prediction_counts,
    reconcile_task_rows,
    soft_findings,
)
from evalpipe.lake import SCHEMAS, Lake
from evalpipe.output import frame_markdown
from evalpipe.reconstruct import plan_reconstruction
from evalpipe.suites import Suite

CHECK_SOURCE_FILES = "source_task_files_match_metrics_all"

# (asset, check, blocking) for every per-run check, in the order `evaluate_run` yields them.
PER_RUN_CHECKS: tuple[tuple[str, str, bool], ...] = (
    ("task_results", CHECK_TASK_RESULTS, True),
    ("task_results", CHECK_TASK_ROWS, True),
    ("task_results", CHECK_AGGREGATES, True),
    ("task_results", CHECK_AGGREGATE_MEMBERS, False),
    ("task_results", CHECK_SOURCE_CONFLICTS, False),
    ("predictions", CHECK_PREDICTIONS, True),
    ("predictions", CHECK_PREDICTION_COUNTS, True),
    ("requests", CHECK_REQUESTS, True),
    ("reconstructed_artifacts", CHECK_SOURCE_FILES, False),
)


@dataclass(frozen=True)
class RunCheck:
    """An outcome and the asset it is about."""

    asset: str
    outcome: CheckOutcome


def expected_task_names(run_dir: Path) -> set[str]:
    """Task names as the source files define them: every record of `metrics-all.jsonl` (unique
    by name) plus tasks present only as artifact files."""
    names: set[str] = set()
    metrics_all = run_dir / METRICS_ALL
    if metrics_all.exists():
        names = {
            value.get("task_name")
            for _, _, value in iter_jsonl(metrics_all)
            if isinstance(value, dict)
        }
    tasks, _ = index_task_files(run_dir)
    names.update(task_name_from_rows(files) for name, files in tasks.items() if name not in names)
    return names


def _read(lake: Lake, table: str, run_id: str) -> pd.DataFrame:
    path = lake.partition_file(table, run_id)
    data = lake.read(table, run_id) if path.exists() else pa.Table.from_pylist([], SCHEMAS[table])
    return frame_from_arrow(data)


def source_files_outcome(run_dir: Path) -> CheckOutcome:
    """WARN when a per-task -metrics.json / -config.json in the dump differs from metrics-all."""
    _, report = plan_reconstruction(read_run(run_dir))
    rows = [(m.task_name, m.kind, m.path.name, m.detail) for m in report.mismatches]
    frame = pd.DataFrame(rows, columns=["task_name", "kind", "file", "detail"])
    return CheckOutcome(
        check=CHECK_SOURCE_FILES,
        passed=not rows,
        severity="WARN",
        description=(
            f"{len(rows)} of {report.compared} per-task files differ from metrics-all.jsonl"
            if rows
            else f"all {report.compared} per-task files in the dump agree with metrics-all.jsonl"
        ),
        metadata={
            "files_compared": report.compared,
            "failures": len(rows),
            "offending_rows": frame_markdown(frame),
            "source_file": str(run_dir / METRICS_ALL),
        },
    )


def evaluate_run(
    run_id: str, run_dir: Path, lake: Lake, suites: dict[str, Suite], now: datetime | None = None
) -> list[RunCheck]:
    """Run every per-run check on what the lake holds for `run_id` and its source directory."""
    results = _read(lake, "task_results", run_id)
    predictions = _read(lake, "predictions", run_id)
    requests = _read(lake, "requests", run_id)
    source = str(run_dir / METRICS_ALL)
    records = read_run(run_dir)
    findings = [(f.kind, str(f.path), f.message) for f in records.findings]
    aggregates, members = reconcile_aggregates(results, suites)
    counts = predictions.groupby("task_name").size().to_dict() if len(predictions) else {}
    return [
        RunCheck(
            "task_results", validate_task_results(results, now, suites=suites, source_file=source)
        ),
        RunCheck(
            "task_results", reconcile_task_rows(results, expected_task_names(run_dir), source)
        ),
        RunCheck("task_results", aggregates),
        RunCheck("task_results", members),
        RunCheck("task_results", soft_findings(findings)),
        RunCheck("predictions", validate_predictions(predictions)),
        RunCheck("predictions", reconcile_prediction_counts(results, counts)),
        RunCheck("requests", validate_requests(requests)),
        RunCheck("reconstructed_artifacts", source_files_outcome(run_dir)),
    ]


def run_status(checks: list[RunCheck]) -> tuple[str, str | None]:
    """`quarantined` with the reasons when a blocking check failed, else `ok`."""
    failed = [c.outcome for c in checks if c.outcome.blocking and not c.outcome.passed]
    if not failed:
        return "ok", None
    return "quarantined", "; ".join(f"{o.check}: {o.description}" for o in failed)


def checks_table(run_id: str, checks: list[RunCheck], checked_at: datetime) -> pa.Table:
    rows = [
        {
            "run_id": run_id,
            "asset": c.asset,
            "check": c.outcome.check,
            "passed": c.outcome.passed,
            "severity": c.outcome.severity,
            "blocking": c.outcome.blocking,
            "description": c.outcome.description,
            "metadata": json.dumps(c.outcome.metadata, default=str, ensure_ascii=False),
            "checked_at": checked_at,
        }
        for c in checks
    ]
    return pa.Table.from_pylist(rows, SCHEMAS["run_checks"])


def status_table(
    run_id: str, checks: list[RunCheck], checked_at: datetime | None = None
) -> pa.Table:
    status, reason = run_status(checks)
    row = {
        "run_id": run_id,
        "status": status,
        "status_reason": reason,
        "checked_at": checked_at or datetime.now(timezone.utc),
    }
    return pa.Table.from_pylist([row], SCHEMAS["run_status"])
