"""A run's status from its checks: `ok`, or `quarantined` when a blocking check failed.

Source-agnostic: every source's per-run checks end here, and only `ok` runs count in anything
aggregated across runs (leaderboards, the report page, snapshot stats).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.storage.lake import Lake, StagedPartitions
from evalpipe.storage.schemas import SCHEMAS

OK = "ok"
QUARANTINED = "quarantined"
FAILED = "failed"


@dataclass(frozen=True)
class RunCheck:
    """An outcome and the asset it is about."""

    asset: str
    outcome: CheckOutcome


def run_status(checks: list[RunCheck]) -> tuple[str, str | None]:
    """`quarantined` with the reasons when a blocking check failed, else `ok`."""
    failed = [c.outcome for c in checks if c.outcome.blocking and not c.outcome.passed]
    if not failed:
        return OK, None
    return QUARANTINED, "; ".join(f"{o.check}: {o.description}" for o in failed)


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
    run_id: str,
    checks: list[RunCheck],
    checked_at: datetime | None = None,
    *,
    fingerprint: str | None = None,
    published: dict | None = None,
) -> pa.Table:
    """The run's status row after checking a new version of it.

    `status` always describes what the tables hold. A new version that passes is published
    and its status is `ok`; one that fails a blocking check is published as `quarantined` only
    when the run has no previous version (so its rows can be inspected); otherwise the previous
    version (`published`, its status row) stays in the tables with its status, and the new one
    is recorded as the quarantined attempt."""
    attempt, reason = run_status(checks)
    keep_previous = attempt == QUARANTINED and published is not None
    row = {
        "run_id": run_id,
        "status": published["status"] if keep_previous else attempt,
        "status_reason": published["status_reason"] if keep_previous else reason,
        "checked_at": checked_at or datetime.now(timezone.utc),
        "attempt_status": attempt,
        "attempt_reason": reason,
        "attempt_fingerprint": fingerprint,
    }
    return pa.Table.from_pylist([row], SCHEMAS["run_status"])


def failed_attempt_table(published: dict, reason: str, fingerprint: str) -> pa.Table:
    """The status row of a run whose newest files failed to ingest (bad input): what is
    published, and its status, stay; the failure and its reason are recorded beside them."""
    row = {
        **published,
        "attempt_status": FAILED,
        "attempt_reason": reason,
        "attempt_fingerprint": fingerprint,
    }
    return pa.Table.from_pylist([row], SCHEMAS["run_status"])


def publishes_new_version(checks: list[RunCheck], published: dict | None) -> bool:
    """Whether a checked new version replaces the run's tables (see `status_table`)."""
    return run_status(checks)[0] == OK or published is None


def published_status(lake: Lake, run_id: str) -> dict | None:
    """The status row of the run's published version, if it has one."""
    record = lake.record(run_id)
    if record is None or "run_status" not in record["tables"]:
        return None
    return lake.read("run_status", run_id).to_pylist()[0]


def record_failed_attempt(lake: Lake, run_id: str, reason: str, fingerprint: str) -> None:
    """Mark a run whose new files failed to ingest: its published version stays as it was."""
    published = published_status(lake, run_id)
    if published is not None:
        lake.write("run_status", run_id, failed_attempt_table(published, reason, fingerprint))


def commit_checked(
    lake: Lake,
    staged: StagedPartitions,
    run_id: str,
    checks: list[RunCheck],
    fingerprint: str,
    *,
    checked_at: datetime | None = None,
    before_publish: Callable[[], None] | None = None,
) -> None:
    """Commit a checked run, the same way for every source: its check results and status
    always; its other staged tables only when the checks let it publish a new version (a
    quarantined run keeps its published one). `before_publish` stages what only a published
    version carries (OLMES's reconstructed artifacts)."""
    published = published_status(lake, run_id)
    checked_at = checked_at or datetime.now(timezone.utc)
    staged.write("run_checks", checks_table(run_id, checks, checked_at))
    staged.write(
        "run_status",
        status_table(run_id, checks, checked_at, fingerprint=fingerprint, published=published),
    )
    if publishes_new_version(checks, published):
        if before_publish is not None:
            before_publish()
        staged.commit()
    else:
        staged.commit(["run_checks", "run_status"])
