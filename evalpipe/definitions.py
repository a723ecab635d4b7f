"""Everything Dagster loads: assets, checks, jobs, sensors and resources from each area.

`workspace.yaml` and `dagster dev` load `defs`; the CLI and tests call `build_definitions` with
their own settings so that they run exactly what the UI shows.
"""

import dagster as dg
from dagster_aws.s3 import S3Resource

from evalpipe.config import Settings, load_settings
from evalpipe.defs.integrity.checks import (
    leaderboard_integrity_checks,
    run_integrity_checks,
    warehouse_views_match_lake,
)
from evalpipe.defs.leaderboards.assets import leaderboard_report, leaderboards
from evalpipe.defs.olmes.assets import (
    instance_tables,
    raw_run_inventory,
    reconstructed_artifacts,
    run_task_tables,
)
from evalpipe.defs.olmes.jobs import ingest_run_job
from evalpipe.defs.olmes.sensors import olmes_dump_sensor
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.runner import REFRESH_JOB
from evalpipe.defs.snapshots.assets import daily_snapshot, snapshot, snapshot_job
from evalpipe.defs.warehouse.assets import warehouse

refresh_downstream_job = dg.define_asset_job(
    REFRESH_JOB,
    selection=dg.AssetSelection.all()
    - dg.AssetSelection.groups("olmes_ingest")
    - dg.AssetSelection.assets("snapshot"),
    description="Rebuild everything that aggregates across runs (warehouse, leaderboards, ...).",
)

automation_sensor = dg.AutomationConditionSensorDefinition(
    "evalpipe_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materializes downstream assets (warehouse, leaderboards) when their inputs change.",
)


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            raw_run_inventory,
            run_task_tables,
            instance_tables,
            reconstructed_artifacts,
            leaderboards,
            leaderboard_report,
            warehouse,
            snapshot,
        ],
        asset_checks=[
            run_integrity_checks,
            leaderboard_integrity_checks,
            warehouse_views_match_lake,
        ],
        jobs=[ingest_run_job, refresh_downstream_job, snapshot_job],
        schedules=[daily_snapshot],
        sensors=[olmes_dump_sensor, automation_sensor],
        resources={"evalpipe": EvalpipeHome.from_settings(settings), "s3": S3Resource()},
    )


defs = build_definitions(load_settings())
