"""Snapshots of the dumps, the lake and the reconstructed artifacts: daily and on demand.

The asset and `evalpipe snapshot` both call `run_snapshot`; the CLI prints its progress live and
records the same materialization in the instance, so the UI shows every snapshot either way.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from evalpipe.config import Settings
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.lake import Lake
from evalpipe.snapshot_store import SnapshotTarget
from evalpipe.snapshots import (
    ProgressEvent,
    SnapshotResult,
    default_sources,
    snapshot_stats,
    take_snapshot,
)

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
    """What the UI shows for a snapshot (never any credential: the result holds none)."""
    return {
        "snapshot_id": result.snapshot_id,
        "uri": dg.MetadataValue.url(result.uri) if result.uri.startswith("s3://") else result.uri,
        "files": result.files,
        "bytes_total": result.bytes_total,
        "files_uploaded": result.files_uploaded,
        "bytes_uploaded": result.bytes_uploaded,
        "bytes_reused": result.bytes_reused,
        "duration_s": round(result.duration_s, 2),
    }


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
    deps=["runs", "task_results", "predictions", "reconstructed_artifacts", "warehouse"],
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
    result = run_snapshot(
        settings,
        target=target,
        client=s3_client_for(target, s3),
        note=config.note,
        progress=lambda event: context.log.info(str(event)),
    )
    return dg.MaterializeResult(metadata=snapshot_metadata(result))


snapshot_job = dg.define_asset_job("snapshot_job", selection=[SNAPSHOT_ASSET])

daily_snapshot = dg.ScheduleDefinition(
    name="daily_snapshot",
    job=snapshot_job,
    cron_schedule="30 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:30 UTC: snapshot to EVALPIPE_SNAPSHOT_TARGET.",
)
