"""Synchronous execution of the Dagster definitions for the CLI, on the same instance as the UI.

`evalpipe ingest` must do what the sensor does, so it launches the same `ingest_run` job per
partition (tagged with the same ingest key) and then the downstream refresh job, recording every
run in `$DAGSTER_HOME` where `dagster dev` shows it.
"""

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from evalpipe.config import Settings
from evalpipe.defs.integrity.checks import PER_RUN_CHECKS_STEP
from evalpipe.defs.olmes.ingest_state import OUTCOME_TAG, QUARANTINED, ingest_tags, pending_scans
from evalpipe.defs.partitions import olmes_runs
from evalpipe.formats.olmes import RunScan, scan_dumps

REFRESH_JOB = "refresh_downstream"
INSTANCE_TEMPLATE = Path(__file__).resolve().parents[2] / "dagster.yaml"


def get_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under `settings.dagster_home`, set up from the repository's
    `dagster.yaml` on first use."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists() and INSTANCE_TEMPLATE.exists():
        shutil.copyfile(INSTANCE_TEMPLATE, config)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return dg.DagsterInstance.get()


def quiet_run_config(log_level: str) -> dict:
    """Run config that keeps Dagster's console logger to `log_level` (the CLI prints its own)."""
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


@dataclass
class RunOutcome:
    """`ok`: the run's tables were written; `quarantined`: and a blocking check then failed."""

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
    """Ingest every new or changed run directory, then refresh what is downstream."""
    scans = scan_dumps(settings.dumps)
    pending = list(scans) if force else pending_scans(instance, scans, retry_failed=True)
    now = time.time()
    for scan in pending:
        if not scan.inventory.settled(now, settings.settle_seconds):
            progress(
                f"  note: {scan.run_id} changed less than {settings.settle_seconds:g}s ago; "
                "it may still be being written"
            )
    known = set(instance.get_dynamic_partitions(olmes_runs.name))
    new_keys = [s.run_id for s in pending if s.run_id not in known]
    if new_keys:
        instance.add_dynamic_partitions(olmes_runs.name, new_keys)
    job = defs.resolve_job_def("ingest_run")
    run_config = quiet_run_config(log_level)
    outcomes = [
        _ingest_one(job, instance, run_config, scan, i, len(pending), progress)
        for i, scan in enumerate(pending, 1)
    ]
    refreshed = False
    if any(o.ok for o in outcomes) or not settings.warehouse.exists():
        progress("refreshing the warehouse and downstream tables ...")
        result = defs.resolve_job_def(REFRESH_JOB).execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )
        if not result.success:
            raise RuntimeError("refreshing the warehouse failed: " + "; ".join(step_errors(result)))
        refreshed = True
    return IngestReport(len(scans), len(scans) - len(pending), outcomes, refreshed)


def _ingest_one(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    run_config: dict,
    scan: RunScan,
    index: int,
    total: int,
    progress: Callable[[str], None],
) -> RunOutcome:
    started = time.perf_counter()
    progress(f"[{index}/{total}] {scan.run_id} ({scan.inventory.total_bytes / 1e6:.1f} MB) ...")
    result = job.execute_in_process(
        run_config=run_config,
        partition_key=scan.run_id,
        instance=instance,
        tags=ingest_tags(scan),
        raise_on_error=False,
    )
    seconds = time.perf_counter() - started
    failed_steps = {e.step_key for e in result.all_events if e.is_step_failure}
    quarantined = failed_steps == {PER_RUN_CHECKS_STEP}
    if quarantined:
        instance.add_run_tags(result.run_id, {OUTCOME_TAG: QUARANTINED})
    ok = result.success or quarantined
    errors = [] if quarantined else step_errors(result)
    outcome = RunOutcome(scan.run_id, ok, seconds, result.run_id, errors, quarantined)
    if quarantined:
        progress(f"      ingested in {seconds:.1f}s, QUARANTINED: a blocking check failed")
    elif outcome.ok:
        progress(f"      ok in {seconds:.1f}s")
    else:
        for message in outcome.errors:
            progress(f"      FAILED {message}")
    return outcome
