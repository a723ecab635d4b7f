"""Which runs need ingesting, kept in the Dagster instance beside the runs that did the work.

After each run of a source is ingested, the ingest step records `(fingerprint, outcome)` for it
in the instance's key-value store (SQLite or Postgres, wherever the instance lives). The
sensors and `evalpipe ingest` compare a scan's fingerprints with these records in a few
queries, so nothing accumulates in a sensor cursor however many run directories a root holds,
and a run ingested (or quarantined, or failed) by the sensor is recorded exactly as one ingested
from the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from evalpipe.core.inventory import RunScan
from evalpipe.results.status import FAILED

BATCH = 500


@dataclass(frozen=True)
class Attempt:
    """The last ingest of one run: the state of its files then, and how it ended."""

    fingerprint: str
    outcome: str
    """`ok`, `quarantined` (written, a blocking check failed) or `failed` (nothing written)."""
    error: str | None = None
    seconds: float = 0.0
    at: float = 0.0


def _key(source: str, run_id: str) -> str:
    return f"evalpipe/ingest/{source}/{run_id}"


def record_attempt(
    instance: dg.DagsterInstance, source: str, run_id: str, attempt: Attempt
) -> None:
    instance.run_storage.set_cursor_values({_key(source, run_id): json.dumps(attempt.__dict__)})


def last_attempts(
    instance: dg.DagsterInstance, source: str, run_ids: Sequence[str]
) -> dict[str, Attempt]:
    """The recorded attempt of each of `run_ids` that has one."""
    found: dict[str, Attempt] = {}
    for start in range(0, len(run_ids), BATCH):
        chunk = {_key(source, r): r for r in run_ids[start : start + BATCH]}
        for key, value in instance.run_storage.get_cursor_values(set(chunk)).items():
            found[chunk[key]] = Attempt(**json.loads(value))
    return found


def pending_scans(
    instance: dg.DagsterInstance, scans: Sequence[RunScan], *, retry_failed: bool
) -> list[RunScan]:
    """Scans whose current state has not been ingested yet.

    The sensor passes `retry_failed=False`: a run that failed on bad input is not retried until
    its files change (no hot loop). The CLI passes `True`: a person asking again gets a retry.
    """
    by_source: dict[str, list[RunScan]] = {}
    for scan in scans:
        by_source.setdefault(scan.source, []).append(scan)
    pending = []
    for source, group in by_source.items():
        attempts = last_attempts(instance, source, [s.run_id for s in group])
        for scan in group:
            attempt = attempts.get(scan.run_id)
            if (
                attempt is None
                or attempt.fingerprint != scan.inventory.fingerprint
                or (retry_failed and attempt.outcome == FAILED)
            ):
                pending.append(scan)
    return pending
