"""The DuckDB warehouse: views over the lake, refreshed whenever a run's tables change."""

import dagster as dg

from evalpipe.defs.resources import EvalpipeHome
from evalpipe.lake import SCHEMAS
from evalpipe.warehouse import build_warehouse

WAREHOUSE_POOL = "duckdb_warehouse"

# Like `eager()`, but a run whose partition failed (bad input) must not hold back everyone
# else's results, so missing upstream partitions do not block the refresh.
REFRESH_ON_ANY_UPDATE = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
)


@dg.asset(
    group_name="warehouse",
    kinds={"duckdb"},
    deps=["raw_run_inventory", "runs", "task_results", "task_metrics"],
    pool=WAREHOUSE_POOL,
    automation_condition=REFRESH_ON_ANY_UPDATE,
    description="warehouse.duckdb: one view per lake table, rebuilt atomically from the lake.",
)
def warehouse(evalpipe: EvalpipeHome) -> dg.MaterializeResult:
    build = build_warehouse(evalpipe.lake, evalpipe.warehouse_path, tables=list(SCHEMAS))
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(build.path)),
            **{f"rows_{name}": count for name, count in build.tables.items()},
        }
    )
