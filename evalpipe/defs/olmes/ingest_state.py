"""Which run directories need ingesting, decided from the Dagster instance's own run history.

Each ingest run is tagged with the run's ingest key (`run_id@fingerprint`). The sensor and the
CLI ask the instance which keys it has already seen, so no per-directory state accumulates in
the sensor cursor however many run directories the dumps root holds.
"""

from collections.abc import Iterable, Sequence

import dagster as dg

from evalpipe.formats.olmes import RunScan

INGEST_KEY_TAG = "evalpipe/ingest_key"
OUTCOME_TAG = "evalpipe/outcome"
QUARANTINED = "quarantined"
BATCH = 500


def ingest_tags(scan: RunScan) -> dict[str, str]:
    return {INGEST_KEY_TAG: scan.ingest_key}


def seen_ingest_keys(
    instance: dg.DagsterInstance,
    keys: Sequence[str],
    statuses: Iterable[dg.DagsterRunStatus] | None = None,
) -> set[str]:
    """The subset of `keys` that some run already carries: any run, or with `statuses` given,
    runs in those statuses plus runs whose tables were written but then quarantined."""
    seen: set[str] = set()
    status_list = list(statuses) if statuses is not None else []
    for start in range(0, len(keys), BATCH):
        chunk = list(keys[start : start + BATCH])
        records = instance.get_run_records(
            dg.RunsFilter(tags={INGEST_KEY_TAG: chunk}, statuses=status_list)
        )
        if status_list:
            quarantined = {INGEST_KEY_TAG: chunk, OUTCOME_TAG: QUARANTINED}
            records += instance.get_run_records(dg.RunsFilter(tags=quarantined))
        seen.update(r.dagster_run.tags[INGEST_KEY_TAG] for r in records)
    return seen


def pending_scans(
    instance: dg.DagsterInstance, scans: Sequence[RunScan], *, retry_failed: bool
) -> list[RunScan]:
    """Scans whose current state has not been ingested yet.

    The sensor passes `retry_failed=False`: a run that failed on bad input is not retried until
    its files change (no hot loop). The CLI passes `True`: a person asking again gets a retry.
    """
    statuses = [dg.DagsterRunStatus.SUCCESS] if retry_failed else None
    seen = seen_ingest_keys(instance, [s.ingest_key for s in scans], statuses)
    return [s for s in scans if s.ingest_key not in seen]
