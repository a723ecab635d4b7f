"""The DuckDB warehouse: views over the lake, refreshed whenever a run's tables change."""

import dagster as dg

from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.warehouse.conditions import REFRESH_ON_ANY_UPDATE
from evalpipe.warehouse import build_warehouse

WAREHOUSE_POOL = "duckdb_warehouse"


@dg.asset(
    group_name="warehouse",
    kinds={"duckdb"},
    deps=[
        "raw_run_inventory",
        "runs",
        "task_results",
        "task_metrics",
        "leaderboard_tasks",
        "leaderboard_benchmarks",
        "leaderboard_overall",
    ],
    pool=WAREHOUSE_POOL,
    automation_condition=REFRESH_ON_ANY_UPDATE,
    description="warehouse.duckdb: one view per lake table, rebuilt atomically from the lake.",
)
def warehouse(evalpipe: EvalpipeHome) -> dg.MaterializeResult:
    build = build_warehouse(evalpipe.lake, evalpipe.warehouse_path)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(build.path)),
            **{f"rows_{name}": count for name, count in build.tables.items()},
        }
    )
