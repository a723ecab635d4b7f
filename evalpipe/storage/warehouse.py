"""`warehouse.duckdb`: views over the lake, rebuilt from it at any time.

The file holds no data of its own, only view definitions, so it is rebuilt into a temporary file
and renamed over the old one: readers never see a half-built warehouse and never wait on the
single DuckDB writer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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


def table_source(table: str, files: list[Path]) -> str:
    """A SQL relation for a lake table: its Parquet files, or an empty relation of its schema
    while no run has written it (so queries and views work on an empty lake)."""
    if files:
        # Exactly the committed files: a run's new version appears whole when its commit record
        # is swapped and the warehouse rebuilt, never half written.
        listed = ", ".join(sql_literal(str(f)) for f in files)
        return f"read_parquet([{listed}], union_by_name = true)"
    columns = ", ".join(
        f"CAST(NULL AS {DUCKDB_TYPES[f.type]}) AS {sql_identifier(f.name)}" for f in SCHEMAS[table]
    )
    return f"(SELECT {columns} WHERE false)"


def runs_with_status_sql(files: dict[str, list[Path]]) -> str:
    """`runs` with each run's quarantine status: `ok`, `quarantined` (a blocking check failed) or
    `unchecked` (no check result yet), over the committed `files` (`Lake.committed_files`). Only
    `ok` runs count in anything aggregated across runs."""
    return (
        "SELECT r.*, coalesce(s.status, 'unchecked') AS status, s.status_reason, "
        "s.checked_at AS status_checked_at, s.attempt_status, s.attempt_reason "
        f"FROM {table_source('runs', files.get('runs', []))} AS r "
        f"LEFT JOIN {table_source('run_status', files.get('run_status', []))} AS s USING (run_id)"
    )


def runs_view_sql(files: dict[str, list[Path]], archives: Path | None) -> str:
    """The warehouse's `runs` view: runs with status, and where each run lives once archived
    (`archived_to`, `archived_at`, `local_deleted_at`; null for a run never archived, and all
    null before the `archives` derived table exists)."""
    base = runs_with_status_sql(files)
    if archives is None:
        return (
            "SELECT *, CAST(NULL AS VARCHAR) AS archived_to, CAST(NULL AS TIMESTAMPTZ) AS "
            f"archived_at, CAST(NULL AS TIMESTAMPTZ) AS local_deleted_at FROM ({base})"
        )
    return (
        f"SELECT b.*, a.archived_to, a.archived_at, a.local_deleted_at FROM ({base}) AS b "
        f"LEFT JOIN ({archived_runs_sql(archives)}) AS a USING (run_id)"
    )


def archived_runs_sql(archives: Path) -> str:
    """Per lake run, its newest archive of each archived unit (the OLMES run directory, or each
    VMEvalKit output experiment / evaluation folder of a data root): the manifest URIs joined
    by ", ", the newest archiving time, and when the local copy was deleted (null while any
    unit's local copy is kept)."""
    names = pq.read_schema(archives).names
    lake_run_id = "lake_run_id" if "lake_run_id" in names else "run_id"  # tables before kinds
    return (
        "SELECT lake_run_id AS run_id, "
        "string_agg(manifest_uri, ', ' ORDER BY unit) AS archived_to, "
        "max(archived_at) AS archived_at, "
        "CASE WHEN bool_and(local_deleted_at IS NOT NULL) THEN max(local_deleted_at) END "
        "AS local_deleted_at FROM ("
        f"SELECT {lake_run_id} AS lake_run_id, run_id AS unit, manifest_uri, "
        "archived_at, local_deleted_at, row_number() OVER (PARTITION BY run_id "
        "ORDER BY archived_at DESC, archive_id DESC) AS newest "
        f"FROM read_parquet({sql_literal(str(archives))}, union_by_name = true)) "
        "WHERE newest = 1 GROUP BY lake_run_id"
    )


def read_runs_with_status(lake: Lake) -> pd.DataFrame:
    with duckdb.connect() as con:
        return con.execute(runs_with_status_sql(lake.committed_files())).df()


@dataclass(frozen=True)
class WarehouseBuild:
    path: Path
    tables: dict[str, int]


def build_warehouse(lake: Lake, path: Path) -> WarehouseBuild:
    """Write a fresh warehouse with one view per lake table and per derived table (`runs`
    carrying each run's status) and return the row count behind each. The views list the
    committed files, so they show each run's tables as one version."""
    files = lake.committed_files()
    views = {t: f"SELECT * FROM {table_source(t, files.get(t, []))}" for t in SCHEMAS}
    archives = lake.derived_file("archives") if "archives" in lake.derived_tables() else None
    views["runs"] = runs_view_sql(files, archives)
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


class ReadOnlyViolation(ValueError):
    """A statement refused on a read-only connection: it would write a file or table, change a
    setting, load an extension, or read a file outside the lake."""


LOCKED_SETTINGS = (
    # Order matters: allowed_directories can only be set while external access is still on, and
    # nothing can be set once the configuration is locked.
    "enable_external_access = false",
    "autoinstall_known_extensions = false",
    "autoload_known_extensions = false",
    "allow_community_extensions = false",
    "allow_persistent_secrets = false",
    "lock_configuration = true",
)
"""What `connect_read_only` sets after `allowed_directories`. With external access off DuckDB
opens no file outside the allowed directories (its own database file and temp directory
aside) and installs or loads no extension; the lock stops the statements it runs from turning
any of it back on (`SET`, `RESET`, `PRAGMA`, `enable_logging()`, `enable_profiling()` ...).
DuckDB cannot make a directory readable but not writable, so `query` also runs queries only."""

QUERY_TYPES = (duckdb.StatementType.SELECT,)
"""Statement types `query` runs, as DuckDB's parser classifies them: SELECT covers `FROM`,
`WITH`, `VALUES`, `DESCRIBE`, `SHOW`, `SUMMARIZE` and `PIVOT ... ON col IN (...)` (without the
`IN` list PIVOT first creates a type); EXPLAIN [ANALYZE] runs only in front of one of those."""

_EXPLAIN = re.compile(r"\s*EXPLAIN(\s+ANALYZE)?\s", re.IGNORECASE)


def default_lake_dir(warehouse: Path) -> Path:
    """The lake beside a warehouse, as `Settings` lays out a home (`lake/`, `warehouse.duckdb`)."""
    return warehouse.parent / "lake"


def connect_read_only(path: Path, lake: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection that can read files only under `lake` (default: the lake beside
    the warehouse), with its access settings locked; a clear error when nothing has been
    ingested yet.

    DuckDB can still write inside the lake through this connection (COPY TO, EXPORT DATABASE):
    run SQL you did not write only through `query`, which runs queries only. The settings are
    the database instance's, which DuckDB shares with every connection this process has open
    on the same file."""
    if not path.exists():
        raise WarehouseMissing(
            f"{path}: no warehouse yet; run `evalpipe ingest` (or `make demo`) first"
        )
    con = duckdb.connect(str(path), read_only=True)
    try:
        _lock_down(con, lake if lake is not None else default_lake_dir(path))
    except BaseException:
        con.close()
        raise
    return con


def _allowed_dirs(lake: Path) -> list[str]:
    """The lake as written and as resolved (views use the path the lake was built with), each
    with a trailing separator so a sibling such as `lake2/` is not a prefix match."""
    return sorted({str(d).rstrip(os.sep) + os.sep for d in (lake.absolute(), lake.resolve())})


def _lock_down(con: duckdb.DuckDBPyConnection, lake: Path) -> None:
    allowed = _allowed_dirs(lake)
    locked, external, current = con.execute(
        "SELECT current_setting('lock_configuration'), "
        "current_setting('enable_external_access'), current_setting('allowed_directories')"
    ).fetchone()
    if locked:
        # DuckDB shares one database instance between the connections a process opens on the
        # same file, so this one may already be locked down; accept it only if it is this lake's.
        if external or not set(allowed) <= set(current):
            raise ReadOnlyViolation(
                f"the warehouse is already open in this process with other access settings "
                f"(external access {external}, allowed directories {current}); "
                f"close that connection first"
            )
        return
    listed = ", ".join(sql_literal(d) for d in allowed)
    con.execute(f"SET allowed_directories = [{listed}]")
    for setting in LOCKED_SETTINGS:
        con.execute(f"SET {setting}")


def query_statements(con: duckdb.DuckDBPyConnection, sql: str) -> list[duckdb.Statement]:
    """The statements of `sql` as DuckDB parses them, if every one is a query; else
    `ReadOnlyViolation` naming the first that is not. `query` runs these same parsed
    statements, so what is checked is what runs."""
    statements = con.extract_statements(sql)
    if not statements:
        raise ValueError("no SQL statement given")
    for statement in statements:
        if not _is_query(con, statement):
            kind = statement.type.name.replace("_", " ")
            text = " ".join(statement.query.split())
            text = text if len(text) <= 80 else text[:77] + "..."
            raise ReadOnlyViolation(
                f"only queries run (SELECT, FROM, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE, or "
                f"EXPLAIN [ANALYZE] of one); DuckDB parses this as a {kind} statement: {text}"
            )
    return statements


def _is_query(con: duckdb.DuckDBPyConnection, statement: duckdb.Statement) -> bool:
    if statement.type in QUERY_TYPES:
        return True
    if statement.type != duckdb.StatementType.EXPLAIN:
        return False
    # EXPLAIN ANALYZE executes its statement: the rest must parse as exactly one query.
    prefix = _EXPLAIN.match(statement.query)
    if prefix is None:
        return False
    try:
        inner = con.extract_statements(statement.query[prefix.end() :])
    except duckdb.ParserException:
        return False
    return len(inner) == 1 and inner[0].type in QUERY_TYPES


def query(
    path: Path, sql: str, params: Sequence[Any] | None = None, lake: Path | None = None
) -> tuple[list[str], list[tuple]]:
    """Run read-only queries (`connect_read_only`, `query_statements`); returns the last one's
    column names and rows. `ReadOnlyViolation` for a statement that is not a query, a read
    outside the lake or a change to a locked setting."""
    lake = lake if lake is not None else default_lake_dir(path)
    with connect_read_only(path, lake) as con:
        statements = query_statements(con, sql)
        if params and len(statements) > 1:
            raise ValueError("parameters need a single SQL statement")
        try:
            for statement in statements[:-1]:
                con.execute(statement)
            cursor = con.execute(statements[-1], params or [])
            columns = [d[0] for d in cursor.description] if cursor.description else []
            return columns, cursor.fetchall()
        except duckdb.PermissionException as exc:
            raise ReadOnlyViolation(f"it reads files only under the lake {lake}: {exc}") from exc
        except duckdb.InvalidInputException as exc:
            if "configuration has been locked" in str(exc):
                raise ReadOnlyViolation(f"its settings are locked: {exc}") from exc
            raise
