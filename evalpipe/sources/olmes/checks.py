"""Every integrity check of one run, evaluated together, and the run's resulting status.

The expected task set is recounted from the source files (not taken from the table builder), and
prediction counts come from the stored predictions partition, so a lake partition that lost rows
or a builder bug is caught rather than confirmed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from evalpipe.core.memory import release_memory
from evalpipe.core.output import frame_markdown
from evalpipe.integrity.gx_suites import (
    CHECK_PREDICTIONS,
    CHECK_TASK_RESULTS,
    PREDICTIONS,
    TableSpec,
    expected_types,
    frame_from_arrow,
    register_spec,
    validate_table,
    validate_table_of_runs,
    validate_task_results_of_runs,
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
from evalpipe.results.status import RunCheck
from evalpipe.results.suites import Suite
from evalpipe.sources.olmes.reader import (
    METRICS_ALL,
    RunRecords,
)
from evalpipe.sources.olmes.reconstruct import ReconstructionReport
from evalpipe.storage.lake import StagedPartitions
from evalpipe.storage.schemas import SCHEMAS, is_json_column

CHECK_SOURCE_FILES = "source_task_files_match_metrics_all"
CHECK_REQUESTS = "requests_schema_and_keys"
CHECK_FINITE_METRICS = "instance_metrics_are_finite"

REQUESTS = register_spec(
    TableSpec(
        table="requests",
        check=CHECK_REQUESTS,
        columns=expected_types("requests"),
        keys=("run_id", "task_name", "doc_id", "idx"),
        identity=("task_name", "doc_id", "idx"),
    )
)


def validate_requests(frame: pd.DataFrame, *, source_file: str | None = None) -> CheckOutcome:
    """One run's `requests` against its suite: columns, types, one row per request index."""
    return validate_table(REQUESTS, frame, source_file=source_file)


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
    ("predictions", CHECK_FINITE_METRICS, False),
)


def expected_task_names(records: RunRecords) -> set[str]:
    """Task names as the source files define them: every record of `metrics-all.jsonl` (unique
    by name) plus tasks present only as artifact files."""
    return {r.task_name for r in records.records}


TableReader = Callable[[str], pd.DataFrame]
"""A run's (staged) partition of a table, as the checks see it."""


def lean_reader(staged: StagedPartitions) -> TableReader:
    """Partitions as the checks need them, without their JSON-text payloads: the scalar columns
    are read from Parquet, and each JSON-text column is stood in for by nulls of the type the
    file stores it as, so the suites' type expectations judge the stored type (all they ever
    looked at: GX checks a typed column by its dtype) without reading a byte of payload."""

    def read(table: str) -> pd.DataFrame:
        schema = staged.schema(table)
        payloads = {f.name for f in SCHEMAS[table] if is_json_column(f)}
        data = staged.read(table, [n for n in schema.names if n not in payloads])
        columns = [
            pa.nulls(data.num_rows, field.type) if field.name in payloads else data[field.name]
            for field in schema
        ]
        return frame_from_arrow(pa.table(columns, schema=schema))

    return read


def source_files_outcome(run_dir: Path, report: ReconstructionReport) -> CheckOutcome:
    """WARN when a per-task -metrics.json / -config.json in the dump differs from metrics-all."""
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


@dataclass(frozen=True)
class RunToCheck:
    """What the checks of one run look at: its source records (parsed once by the ingest), its
    reconstruction report, its new staged tables, and facts the instance ingest counted."""

    records: RunRecords
    reconstruction: ReconstructionReport
    read: TableReader
    nonfinite_metrics: dict[str, int]


def nonfinite_outcome(counts: dict[str, int]) -> CheckOutcome:
    """WARN when per-instance metrics hold NaN or Infinity (Python's json writes them for failed
    instances; strict JSON readers reject them, and they poison means)."""
    frame = pd.DataFrame(sorted(counts.items()), columns=["task_name", "rows"])
    total = int(frame["rows"].sum()) if len(frame) else 0
    return CheckOutcome(
        check=CHECK_FINITE_METRICS,
        passed=total == 0,
        severity="WARN",
        description=(
            f"{total} predictions rows in {len(frame)} tasks have NaN or Infinity in metrics"
            if total
            else "no NaN or Infinity in any per-instance metrics"
        ),
        metadata={"rows": total, "failures": len(frame), "offending_rows": frame_markdown(frame)},
    )


def evaluate_runs(
    runs: Sequence[RunToCheck], suites: dict[str, Suite], now: datetime | None = None
) -> list[list[RunCheck]]:
    """Every per-run check of several runs, in `PER_RUN_CHECKS` order, on each run's new
    (staged) tables against what its source files say; each GX suite is validated once for all
    of them."""
    results = [run.read("task_results") for run in runs]
    sources = [str(run.records.run_dir / METRICS_ALL) for run in runs]
    task_suites = validate_task_results_of_runs(results, now, suites=suites, sources=sources)
    # The instance tables are the big ones: one at a time, each dropped once judged, so the
    # peak holds one table's narrow frames, not both.
    predictions = [run.read("predictions") for run in runs]
    prediction_suites = validate_table_of_runs(PREDICTIONS, predictions)
    counts = [
        frame.groupby("task_name").size().to_dict() if len(frame) else {} for frame in predictions
    ]
    del predictions
    release_memory()
    request_suites = validate_table_of_runs(REQUESTS, [run.read("requests") for run in runs])
    release_memory()
    checks = []
    for i, run in enumerate(runs):
        records = run.records
        findings = [(f.kind, str(f.path), f.message) for f in records.findings]
        aggregates, members = reconcile_aggregates(results[i], suites)
        expected = expected_task_names(records)
        checks.append(
            [
                RunCheck("task_results", task_suites[i]),
                RunCheck("task_results", reconcile_task_rows(results[i], expected, sources[i])),
                RunCheck("task_results", aggregates),
                RunCheck("task_results", members),
                RunCheck("task_results", soft_findings(findings)),
                RunCheck("predictions", prediction_suites[i]),
                RunCheck("predictions", reconcile_prediction_counts(results[i], counts[i])),
                RunCheck("requests", request_suites[i]),
                RunCheck(
                    "reconstructed_artifacts",
                    source_files_outcome(records.run_dir, run.reconstruction),
                ),
                RunCheck("predictions", nonfinite_outcome(run.nonfinite_metrics)),
            ]
        )
    return checks
