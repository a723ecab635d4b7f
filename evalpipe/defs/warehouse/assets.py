"""The DuckDB warehouse: views over the lake, refreshed whenever a run's tables change.

Reached through dagster-duckdb's `DuckDBResource` (configured read-only): the asset rebuilds
the file at the resource's path atomically, and the check reads it through the resource.
"""

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from evalpipe.defs.checks import check_result
from evalpipe.defs.leaderboards.assets import BOARDS
from evalpipe.defs.registry import downstream_keys, per_run_keys
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.warehouse.conditions import REFRESH_ON_ANY_UPDATE
from evalpipe.integrity.cross_run import CHECK_WAREHOUSE_VIEWS, warehouse_matches_lake
from evalpipe.storage.schemas import SCHEMAS
from evalpipe.storage.warehouse import build_warehouse, sql_identifier

WAREHOUSE_POOL = "duckdb_warehouse"
NOT_TABLES = ["reconstructed_artifacts"]


@dg.asset(
    group_name="warehouse",
    kinds={"duckdb"},
    deps=[key for key in per_run_keys() if key.path[-1] not in NOT_TABLES]
    + list(BOARDS)
    + downstream_keys()
    + ["archives"],  # the retention area's table of archived runs
    pool=WAREHOUSE_POOL,
    automation_condition=REFRESH_ON_ANY_UPDATE,
    description="warehouse.duckdb: one view per lake table (every source's runs, task and "
    "instance tables, check results, leaderboards), rebuilt atomically from the lake.",
)
def warehouse(evalpipe: EvalpipeHome, duckdb: DuckDBResource) -> dg.MaterializeResult:
    build = build_warehouse(evalpipe.lake, Path(duckdb.database))
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(duckdb.database),
            **{f"rows_{name}": count for name, count in build.tables.items()},
        }
    )


@dg.asset_check(
    asset="warehouse",
    name=CHECK_WAREHOUSE_VIEWS,
    description="WARN: each warehouse view has as many rows as its lake table (a view that "
    "disagrees points at files that moved, or the warehouse predates a table).",
)
def warehouse_views_match_lake(
    evalpipe: EvalpipeHome, duckdb: DuckDBResource
) -> dg.AssetCheckResult:
    lake = evalpipe.lake
    committed = lake.committed_files()
    tables = [t for t in SCHEMAS if committed.get(t)] + lake.derived_tables()
    with duckdb.get_connection() as con:
        views = {
            t: con.execute(f"SELECT count(*) FROM {sql_identifier(t)}").fetchone()[0]
            for t in tables
        }
    return check_result(
        "warehouse", warehouse_matches_lake(views, {t: lake.count_rows(t) for t in tables})
    )
