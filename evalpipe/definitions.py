"""Everything Dagster loads: each source's ingest, then leaderboards, warehouse and snapshots.

`workspace.yaml` and `dagster dev` load `defs`; the CLI and tests call `build_definitions` with
their own settings so that they run exactly what the UI shows. Sources are registered once, in
`evalpipe.defs.registry`.
"""

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource

from evalpipe.core.config import Settings, load_settings
from evalpipe.defs.instance import relax_sqlite_sync
from evalpipe.defs.leaderboards.assets import (
    leaderboard_integrity_checks,
    leaderboard_report,
    leaderboards,
)
from evalpipe.defs.registry import SOURCE_DEFS
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.retention.jobs import (
    archive_job,
    archives,
    daily_retention,
    retention_job,
    weekly_archive,
)
from evalpipe.defs.snapshots.assets import daily_snapshot, snapshot, snapshot_job
from evalpipe.defs.wandb.assets import wandb_runs
from evalpipe.defs.warehouse.assets import warehouse, warehouse_views_match_lake

relax_sqlite_sync()  # in every process that loads these definitions: the CLI, code server, runs

REFRESH_JOB = "refresh_downstream"
DOWNSTREAM_GROUPS = ("leaderboards", "warehouse", "sinks")

refresh_downstream_job = dg.define_asset_job(
    REFRESH_JOB,
    selection=dg.AssetSelection.groups(*DOWNSTREAM_GROUPS),
    description="Rebuild everything that aggregates across runs: leaderboards, the report page "
    "and the warehouse (with their checks), and log to W&B when EVALPIPE_WANDB_PROJECT is set.",
)

AUTOMATION_INTERVAL_SECONDS = 5
"""How often the automation sensor evaluates: a landed run reaches the boards within about a
minute (settle time aside), and a tick that finds nothing new costs a few milliseconds."""

automation_sensor = dg.AutomationConditionSensorDefinition(
    "evalpipe_automation",
    target=dg.AssetSelection.groups(*DOWNSTREAM_GROUPS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=AUTOMATION_INTERVAL_SECONDS,
    description="Materializes downstream assets (leaderboards, report, warehouse) when their "
    "inputs change.",
)


def build_definitions(settings: Settings) -> dg.Definitions:
    core = dg.Definitions(
        assets=[leaderboards, leaderboard_report, warehouse, snapshot, archives, wandb_runs],
        asset_checks=[leaderboard_integrity_checks, warehouse_views_match_lake],
        jobs=[refresh_downstream_job, snapshot_job, archive_job, retention_job],
        schedules=[daily_snapshot, weekly_archive, daily_retention],
        sensors=[automation_sensor],
        resources={
            "evalpipe": EvalpipeHome.from_settings(settings),
            "duckdb": DuckDBResource(
                database=str(settings.warehouse), connection_config={"access_mode": "READ_ONLY"}
            ),
            "s3": S3Resource(),
        },
        # Every step of a run in the run's own process: our steps are short and each extra
        # process re-imports Dagster, GX and pandas (seconds per step).
        executor=dg.in_process_executor,
    )
    return dg.Definitions.merge(core, *(source.definitions() for source in SOURCE_DEFS))


defs = build_definitions(load_settings())
