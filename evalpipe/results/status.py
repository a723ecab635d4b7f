"""A run's status from its checks: `ok`, or `quarantined` when a blocking check failed.

Source-agnostic: every source's per-run checks end here, and only `ok` runs count in anything
aggregated across runs (leaderboards, the report page, snapshot stats).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.storage.schemas import SCHEMAS

OK = "ok"
QUARANTINED = "quarantined"


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
