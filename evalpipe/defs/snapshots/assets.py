"""Snapshots of the dumps, the lake and the reconstructed artifacts: daily and on demand.

`evalpipe snapshot` materializes this same asset through `snapshot_job` on the same instance
as the daily schedule, so the UI shows every snapshot either way; its dry run calls
`run_snapshot` directly and records nothing. What the asset logs, records as metadata or raises
goes through `redact_credentials`: botocore errors quote AWS_ENDPOINT_URL verbatim.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from evalpipe.core.config import Settings
from evalpipe.defs.leaderboards.assets import BOARDS
from evalpipe.defs.registry import per_run_keys
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.snapshots.manifests import (
    ProgressEvent,
    SnapshotError,
    SnapshotResult,
    default_sources,
    snapshot_stats,
    take_snapshot,
)
from evalpipe.snapshots.store import SnapshotTarget, redact_credentials
from evalpipe.storage.lake import Lake

SNAPSHOT_ASSET = "snapshot"


def run_snapshot(
    settings: Settings,
    *,
    target: str | None = None,
    client: Any = None,
    note: str = "",
    dry_run: bool = False,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> SnapshotResult:
    """Snapshot everything needed to rebuild the warehouse to `target` (default: configured)."""
    return take_snapshot(
        default_sources(settings),
        target or settings.snapshot_target,
        client=client,
        note=note,
        stats=snapshot_stats(Lake(settings.lake)),
        dry_run=dry_run,
        progress=progress,
    )


def snapshot_metadata(result: SnapshotResult) -> dict[str, Any]:
    """What the UI shows for a snapshot, credentials redacted from every text."""
    uri = redact_credentials(result.uri)
    return {
        "snapshot_id": result.snapshot_id,
        "uri": dg.MetadataValue.url(uri) if uri.startswith("s3://") else uri,
        "files": result.files,
        "bytes_total": result.bytes_total,
        "files_uploaded": result.files_uploaded,
        "bytes_uploaded": result.bytes_uploaded,
        "bytes_reused": result.bytes_reused,
        "duration_s": round(result.duration_s, 2),
        "skipped": dg.MetadataValue.json([redact_credentials(line) for line in result.skipped]),
    }


def _log_progress(context: dg.AssetExecutionContext, event: ProgressEvent) -> None:
    """Progress at INFO; entries skipped unread at WARNING, so they stand out in the run."""
    log = context.log.warning if event.stage == "skip" else context.log.info
    log(redact_credentials(str(event)))


def s3_client_for(target: str, s3: S3Resource) -> Any:
    """A boto3 client from dagster-aws's S3Resource, only when the target is on S3."""
    return s3.get_client() if SnapshotTarget.parse(target).scheme == "s3" else None


class SnapshotConfig(dg.Config):
    note: str = ""
    target: str | None = None


@dg.asset(
    name=SNAPSHOT_ASSET,
    group_name="snapshots",
    kinds={"s3", "json"},
    deps=[*per_run_keys(), *BOARDS],
    description="An immutable, verifiable snapshot (manifest with sha256 of every file) of the "
    "dumps, the lake and the reconstructed artifacts at EVALPIPE_SNAPSHOT_TARGET.",
)
def snapshot(
    context: dg.AssetExecutionContext,
    config: SnapshotConfig,
    evalpipe: EvalpipeHome,
    s3: S3Resource,
) -> dg.MaterializeResult:
    settings = evalpipe.settings()
    target = config.target or settings.snapshot_target
    try:
        result = run_snapshot(
            settings,
            target=target,
            client=s3_client_for(target, s3),
            note=config.note,
            progress=lambda event: _log_progress(context, event),
        )
    except Exception as exc:
        # Dagster records the raised error and its chain: re-raise a redacted copy, unchained.
        text = str(exc) if isinstance(exc, SnapshotError) else f"{type(exc).__name__}: {exc}"
        raise SnapshotError(redact_credentials(text)) from None
    return dg.MaterializeResult(metadata=snapshot_metadata(result))


SNAPSHOT_JOB = "snapshot_job"
snapshot_job = dg.define_asset_job(
    SNAPSHOT_JOB,
    selection=[SNAPSHOT_ASSET],
    description="Store the dumps, the lake and the reconstructed artifacts as a new verified "
    "snapshot at EVALPIPE_SNAPSHOT_TARGET (config: note, target).",
)

daily_snapshot = dg.ScheduleDefinition(
    name="daily_snapshot",
    job=snapshot_job,
    cron_schedule="30 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:30 UTC: snapshot to EVALPIPE_SNAPSHOT_TARGET.",
)
