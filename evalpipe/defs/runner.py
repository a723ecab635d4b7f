"""Synchronous execution of the Dagster definitions for the CLI, on the same instance as the UI.

`evalpipe ingest` does what the sensors do: for each source it adds the new runs as partitions,
launches the source's ingest job once per contiguous range of pending partitions (a batch: the
per-run overhead is paid once), then the downstream refresh job, recording every run in
`$DAGSTER_HOME` where `dagster dev` shows it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from evalpipe.core.config import Settings
from evalpipe.definitions import REFRESH_JOB
from evalpipe.defs.ingest_state import FAILED, Attempt, last_attempts, pending_scans
from evalpipe.defs.instance import write_instance_config
from evalpipe.defs.registry import SOURCE_DEFS
from evalpipe.defs.sources import SourceDefs, contiguous_ranges, range_tags
from evalpipe.results.status import QUARANTINED


def get_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under `settings.dagster_home`, its `dagster.yaml` written from
    the settings (SQLite, or Postgres when DAGSTER_PG_URL is set)."""
    write_instance_config(settings)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return dg.DagsterInstance.get()


def quiet_run_config(log_level: str) -> dict:
    """Run config that keeps Dagster's console logger to `log_level` (the CLI prints its own)."""
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


@dataclass
class RunOutcome:
    """`ok`: the run's tables were written; `quarantined`: and a blocking check then failed."""

    source: str
    run_id: str
    ok: bool
    seconds: float
    dagster_run_id: str
    errors: list[str] = field(default_factory=list)
    quarantined: bool = False


@dataclass
class IngestReport:
    scanned: int
    skipped_unchanged: int
    outcomes: list[RunOutcome]
    refreshed: bool
    batches: int = 0

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if not o.ok]


def step_errors(result: dg.ExecuteInProcessResult) -> list[str]:
    """The user-facing message of every failed step (the `file:line: problem` of bad input)."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None and error.cls_name in (
                "DagsterExecutionStepExecutionError",
            ):
                error = error.cause
            text = error.message.strip()
            qualified = text.split(": ", 1)
            if len(qualified) == 2 and qualified[0].endswith(error.cls_name):
                text = qualified[1]
            messages.append(f"{event.step_key}: {text}")
    return messages


def ingest(
    defs: dg.Definitions,
    settings: Settings,
    instance: dg.DagsterInstance,
    *,
    force: bool = False,
    progress: Callable[[str], None] = print,
    log_level: str = "CRITICAL",
) -> IngestReport:
    """Ingest every new or changed run of every source, then refresh what is downstream."""
    report = IngestReport(0, 0, [], False)
    run_config = quiet_run_config(log_level)
    for source_defs in SOURCE_DEFS:
        _ingest_source(defs, source_defs, settings, instance, force, progress, run_config, report)
    if any(o.ok for o in report.outcomes) or not settings.warehouse.exists():
        progress("refreshing the warehouse and downstream tables ...")
        result = defs.resolve_job_def(REFRESH_JOB).execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )
        if not result.success:
            raise RuntimeError("refreshing the warehouse failed: " + "; ".join(step_errors(result)))
        report.refreshed = True
    return report


def _ingest_source(
    defs: dg.Definitions,
    source_defs: SourceDefs,
    settings: Settings,
    instance: dg.DagsterInstance,
    force: bool,
    progress: Callable[[str], None],
    run_config: dict,
    report: IngestReport,
) -> None:
    source = source_defs.source
    root = source.root(settings)
    if not root.is_dir():
        return
    found = source.scan(root)
    scans = found.runs
    for skipped in found.skipped:
        progress(f"  note: {skipped}")
    pending = list(scans) if force else pending_scans(instance, scans, retry_failed=True)
    report.scanned += len(scans)
    report.skipped_unchanged += len(scans) - len(pending)
    if not pending:
        return
    now = time.time()
    for scan in pending:
        if not scan.inventory.settled(now, settings.settle_seconds):
            progress(
                f"  note: {scan.run_id} changed less than {settings.settle_seconds:g}s ago; "
                "it may still be being written"
            )
    name = source_defs.partitions.name
    known = instance.get_dynamic_partitions(name)
    new_keys = [s.run_id for s in pending if s.run_id not in set(known)]
    if new_keys:
        instance.add_dynamic_partitions(name, new_keys)
    order = [*known, *new_keys]
    ranges = contiguous_ranges(order, {s.run_id for s in pending})
    job = defs.resolve_job_def(source_defs.job.name)
    by_id = {s.run_id: s for s in pending}
    done = 0
    for first, last, count in ranges:
        batch = order[order.index(first) : order.index(last) + 1]
        size = sum(by_id[r].inventory.total_bytes for r in batch)
        span = f"{first} ... {last}" if count > 1 else first
        progress(
            f"[{done + 1}-{done + count}/{len(pending)}] {source.name}: {count} run "
            f"directories ({size / 1e6:.1f} MB) in one batch: {span}"
        )
        started, started_at = time.perf_counter(), time.time()
        result = job.execute_in_process(
            run_config=run_config,
            instance=instance,
            tags=range_tags(first, last, count),
            raise_on_error=False,
        )
        done += count
        attempts = last_attempts(instance, source.name, batch)
        for run_id in batch:
            outcome = _outcome(source.name, run_id, attempts.get(run_id), started_at, result)
            report.outcomes.append(outcome)
            progress(_outcome_line(outcome))
        progress(f"      batch of {count} in {time.perf_counter() - started:.1f}s")
        report.batches += 1


def _outcome(
    source: str,
    run_id: str,
    attempt: Attempt | None,
    started_at: float,
    result: dg.ExecuteInProcessResult,
) -> RunOutcome:
    """What became of one run of a batch, from the attempt its ingest recorded."""
    if attempt is None or attempt.at < started_at:
        errors = step_errors(result) or ["the batch ended before this run was ingested"]
        return RunOutcome(source, run_id, False, 0.0, result.run_id, errors)
    if attempt.outcome == FAILED:
        return RunOutcome(
            source, run_id, False, attempt.seconds, result.run_id, [attempt.error or "failed"]
        )
    quarantined = attempt.outcome == QUARANTINED
    return RunOutcome(source, run_id, True, attempt.seconds, result.run_id, [], quarantined)


def _outcome_line(outcome: RunOutcome) -> str:
    if outcome.quarantined:
        state = f"ingested in {outcome.seconds:.1f}s, QUARANTINED: a blocking check failed"
    elif outcome.ok:
        state = f"ok in {outcome.seconds:.1f}s"
    else:
        state = "FAILED " + "; ".join(outcome.errors)
    return f"      {outcome.run_id}: {state}"
