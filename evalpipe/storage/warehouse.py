"""`warehouse.duckdb`: views over the lake, rebuilt from it at any time.

The file holds no data of its own, only view definitions, so it is rebuilt into a temporary file
and renamed over the old one: readers never see a half-built warehouse and never wait on the
single DuckDB writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from evalpipe.core.atomic import atomic_path
from evalpipe.storage.lake import Lake
from evalpipe.storage.schemas import SCHEMAS

DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}


def sql_literal(text: str) -> str:
    """A single-quoted SQL string literal. Only for DDL (view bodies), where DuckDB takes no
    parameters; values in queries always go through parameters."""
    return "'" + text.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_source(lake: Lake, table: str) -> str:
    """A SQL relation for a lake table: its Parquet files, or an empty relation of its schema
    while no run has written it (so queries and views work on an empty lake)."""
    files = lake.files(table)
    if files:
        # Exactly the committed files: a run's new version appears whole when its commit record
        # is swapped and the warehouse rebuilt, never half written.
        listed = ", ".join(sql_literal(str(f)) for f in files)
        return f"read_parquet([{listed}], union_by_name = true)"
    columns = ", ".join(
        f"CAST(NULL AS {DUCKDB_TYPES[f.type]}) AS {sql_identifier(f.name)}" for f in SCHEMAS[table]
    )
    return f"(SELECT {columns} WHERE false)"


def runs_with_status_sql(lake: Lake) -> str:
    """`runs` with each run's quarantine status: `ok`, `quarantined` (a blocking check failed) or
    `unchecked` (no check result yet). Only `ok` runs count in anything aggregated across runs."""
    return (
        "SELECT r.*, coalesce(s.status, 'unchecked') AS status, s.status_reason, "
        "s.checked_at AS status_checked_at "
        f"FROM {table_source(lake, 'runs')} AS r "
        f"LEFT JOIN {table_source(lake, 'run_status')} AS s USING (run_id)"
    )


def read_runs_with_status(lake: Lake) -> pd.DataFrame:
    with duckdb.connect() as con:
        return con.execute(runs_with_status_sql(lake)).df()


@dataclass(frozen=True)
class WarehouseBuild:
    path: Path
    tables: dict[str, int]


def build_warehouse(lake: Lake, path: Path) -> WarehouseBuild:
    """Write a fresh warehouse with one view per lake table and per derived table (`runs`
    carrying each run's status) and return the row count behind each. The views list the
    committed files, so they show each run's tables as one version."""
    views = {table: f"SELECT * FROM {table_source(lake, table)}" for table in SCHEMAS}
    views["runs"] = runs_with_status_sql(lake)
    for table in lake.derived_tables():
        views[table] = f"SELECT * FROM read_parquet({sql_literal(str(lake.derived_file(table)))})"
    counts: dict[str, int] = {}
    with atomic_path(path) as tmp:
        try:
            with duckdb.connect(str(tmp)) as con:
                for name, body in views.items():
                    con.execute(f"CREATE VIEW {sql_identifier(name)} AS {body}")
                    counts[name] = con.execute(
                        f"SELECT count(*) FROM {sql_identifier(name)}"
                    ).fetchone()[0]
        finally:
            tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return WarehouseBuild(path=path, tables=counts)


class WarehouseMissing(FileNotFoundError):
    pass


def connect_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection; a clear error when nothing has been ingested yet."""
    if not path.exists():
        raise WarehouseMissing(
            f"{path}: no warehouse yet; run `evalpipe ingest` (or `make demo`) first"
        )
    return duckdb.connect(str(path), read_only=True)


def query(
    path: Path, sql: str, params: Sequence[Any] | None = None
) -> tuple[list[str], list[tuple]]:
    """Run a read-only query; returns column names and rows."""
    with connect_read_only(path) as con:
        cursor = con.execute(sql, params or [])
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()
