"""`warehouse.duckdb`: views over the lake, rebuilt from it at any time.

The file holds no data of its own, only view definitions, so it is rebuilt into a temporary file
and renamed over the old one: readers never see a half-built warehouse and never wait on the
single DuckDB writer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from evalpipe.lake import SCHEMAS, Lake


def sql_literal(text: str) -> str:
    """A single-quoted SQL string literal. Only for DDL (view bodies), where DuckDB takes no
    parameters; values in queries always go through parameters."""
    return "'" + text.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class WarehouseBuild:
    path: Path
    tables: dict[str, int]


def build_warehouse(lake: Lake, path: Path, tables: Sequence[str] | None = None) -> WarehouseBuild:
    """Write a fresh warehouse with one view per lake table (an empty typed table where the lake
    has no file yet) and per derived table, and return the row count behind each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    counts: dict[str, int] = {}
    try:
        with duckdb.connect(str(tmp)) as con:
            for table in tables or SCHEMAS:
                counts[table] = _create_view(con, lake, table)
            for table in lake.derived_tables():
                source = f"read_parquet({sql_literal(str(lake.derived_file(table)))})"
                con.execute(f"CREATE VIEW {sql_identifier(table)} AS SELECT * FROM {source}")
                counts[table] = con.execute(
                    f"SELECT count(*) FROM {sql_identifier(table)}"
                ).fetchone()[0]
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return WarehouseBuild(path=path, tables=counts)


def _create_view(con: duckdb.DuckDBPyConnection, lake: Lake, table: str) -> int:
    name = sql_identifier(table)
    if lake.has_data(table):
        source = f"read_parquet({sql_literal(lake.glob(table))}, union_by_name = true)"
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {source}")
    else:
        empty = pa.Table.from_pylist([], SCHEMAS[table])  # noqa: F841 - read by DuckDB's replacement scan
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM empty")
    return con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]


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
