"""Integrity checks on one run's partitions, as plain functions returning `CheckOutcome`s.

The Dagster layer wraps each in an `@asset_check` named after its check constant. Structural
and reconciliation failures are ERROR (blocking); soft findings are WARN. Importing this
package does not import Great Expectations; the first GX validation does.
"""

from evalpipe.integrity.gx_suites import (
    CHECK_PREDICTIONS,
    CHECK_REQUESTS,
    CHECK_TASK_RESULTS,
    frame_from_arrow,
    is_bounded_metric,
    validate_predictions,
    validate_requests,
    validate_task_results,
)
from evalpipe.integrity.outcome import CheckOutcome, Severity
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

__all__ = [
    "CHECK_AGGREGATES",
    "CHECK_AGGREGATE_MEMBERS",
    "CHECK_PREDICTIONS",
    "CHECK_PREDICTION_COUNTS",
    "CHECK_REQUESTS",
    "CHECK_SOURCE_CONFLICTS",
    "CHECK_TASK_RESULTS",
    "CHECK_TASK_ROWS",
    "CheckOutcome",
    "Severity",
    "frame_from_arrow",
    "is_bounded_metric",
    "reconcile_aggregates",
    "reconcile_prediction_counts",
    "reconcile_task_rows",
    "soft_findings",
    "validate_predictions",
    "validate_requests",
    "validate_task_results",
]
