"""The `archive` job (weekly) and the `retention` job (daily), both scheduled RUNNING.

Each runs the domain code in `evalpipe.retention.plan` with the policy from
`EVALPIPE_RETENTION_FILE` and reports what it did as metadata: counts per action, bytes freed,
what was kept and why, and what was refused (a run directory that changed after archiving).
`evalpipe retention apply` executes these same jobs on the same instance.
"""

import os
import time
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from evalpipe.core.config import load_retention_policy
from evalpipe.core.inventory import RunScan
from evalpipe.defs.ingest_state import last_attempts
from evalpipe.defs.registry import SOURCE_DEFS
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.retention.runs import delete_runs, plan_run_deletions
from evalpipe.results.status import OK, QUARANTINED
from evalpipe.retention.plan import Action, Outcome, Scope, apply_archive, apply_retention
from evalpipe.snapshots.store import SnapshotTarget, redact_credentials

ARCHIVE_JOB = "archive"
ARCHIVES_ASSET = "archives"
RETENTION_JOB = "retention"
MAX_LISTED = 200
"""Actions listed one by one in a run's metadata; the counts always cover all of them."""


def build_scope(
    settings_home: EvalpipeHome, instance: dg.DagsterInstance, s3: S3Resource | None = None
) -> Scope:
    """The policy's view of this evalpipe home: its sources, stores and ingest ledger."""
    settings = settings_home.settings()
    policy = load_retention_policy({**os.environ, "EVALPIPE_HOME": str(settings.home)})
    s3 = s3 or S3Resource()

    def client_for(target: str) -> Any:
        return s3.get_client() if SnapshotTarget.parse(target).scheme == "s3" else None

    def is_ingested(scan: RunScan) -> bool:
        attempt = last_attempts(instance, scan.source, [scan.run_id]).get(scan.run_id)
        return bool(
            attempt
            and attempt.fingerprint == scan.inventory.fingerprint
            and attempt.outcome in (OK, QUARANTINED)
        )

    return Scope(
        settings,
        policy,
        [defs.source for defs in SOURCE_DEFS],
        client_for=client_for,
        is_ingested=is_ingested,
        now=time.time(),
    )


def outcome_metadata(outcome: Outcome) -> dict[str, Any]:
    listed = [
        {**a.__dict__, "target": redact_credentials(a.target)} for a in outcome.done[:MAX_LISTED]
    ]
    return {
        **{f"{action}_count": n for action, n in outcome.counts().items()},
        "bytes_freed": outcome.bytes_freed(),
        "done": dg.MetadataValue.json(listed),
        "kept": dg.MetadataValue.json(outcome.kept),
        "refused": dg.MetadataValue.json(outcome.refused),
    }


@dg.asset(
    name=ARCHIVES_ASSET,
    group_name="retention",
    kinds={"parquet", "s3"},
    description="The `archives` table: every run directory archived (verified, byte for byte) "
    "to [archive] target, and whether its local copy was removed. Materializing it archives "
    "what the policy says is due.",
)
def archives(
    context: dg.AssetExecutionContext, evalpipe: EvalpipeHome, s3: S3Resource
) -> dg.MaterializeResult:
    scope = build_scope(evalpipe, context.instance, s3)
    outcome = apply_archive(scope, progress=lambda line: context.log.info(redact_credentials(line)))
    for refused in outcome.refused:
        context.log.warning(refused)
    return dg.MaterializeResult(metadata=outcome_metadata(outcome))


@dg.op(out=dg.Out(dg.Nothing), description="Expire snapshots, sweep objects, prune runs.")
def apply_retention_policy(context: dg.OpExecutionContext, evalpipe: EvalpipeHome, s3: S3Resource):
    scope = build_scope(evalpipe, context.instance, s3)
    outcome = apply_retention(
        scope, progress=lambda line: context.log.info(redact_credentials(line))
    )
    runs = plan_run_deletions(context.instance, scope.policy.dagster, scope.now)
    deleted = delete_runs(context.instance, runs.delete)
    outcome.done += deleted
    outcome.kept += runs.kept
    if deleted:
        context.log.info(f"deleted {len(deleted)} old Dagster runs without asset events")
    yield dg.Output(None, metadata=outcome_metadata(outcome))


archive_job = dg.define_asset_job(
    ARCHIVE_JOB,
    selection=[ARCHIVES_ASSET],
    description="Copy run directories unchanged for [archive] after_days to the archive target, "
    "read every object back and check its sha256, record them in the `archives` table, then "
    "(only with delete_local = true) remove local copies whose files all match the archive.",
)


@dg.job(
    name=RETENTION_JOB,
    description="Expire snapshots by the policy (latest and pinned never), sweep stored objects "
    "no kept snapshot or archive references once past the grace period, sweep stale lake "
    "partial files, and delete old Dagster runs that recorded no asset events.",
)
def retention_job() -> None:
    apply_retention_policy()


weekly_archive = dg.ScheduleDefinition(
    name="weekly_archive",
    job=archive_job,
    cron_schedule="0 4 * * 0",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sundays at 04:00 UTC: archive run directories idle for [archive] after_days.",
)

daily_retention = dg.ScheduleDefinition(
    name="daily_retention",
    job=retention_job,
    cron_schedule="0 5 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 05:00 UTC: apply the retention policy (EVALPIPE_RETENTION_FILE).",
)


def run_plan_actions(scope: Scope, instance: dg.DagsterInstance) -> tuple[list[Action], list[str]]:
    """Dagster's share of `evalpipe retention plan`."""
    runs = plan_run_deletions(instance, scope.policy.dagster, scope.now)
    return runs.delete, runs.kept
