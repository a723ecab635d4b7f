"""A read-only warehouse connection reads the lake and nothing else, and `query` runs queries
only: DuckDB's own access settings (locked) stop reads outside the lake, extensions and setting
changes; the statement check stops what those settings allow inside the lake (COPY TO)."""

from pathlib import Path

import duckdb
import pytest

from evalpipe.storage.lake import Lake
from evalpipe.storage.warehouse import (
    ReadOnlyViolation,
    build_warehouse,
    connect_read_only,
    query,
    query_statements,
)

RUN = "2025-11-03_posttrain/_eval_results/org_model__main"


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """A home with a lake holding one run's task_metrics and a warehouse over it."""
    lake = Lake(tmp_path / "home" / "lake")
    rows = [{"run_id": RUN, "task_name": f"t{i}", "metric": "acc", "value": 0.5} for i in range(7)]
    lake.write("task_metrics", RUN, rows)
    path = tmp_path / "home" / "warehouse.duckdb"
    build_warehouse(lake, path)
    return path


def test_query_reads_the_views_under_the_locked_settings(warehouse: Path) -> None:
    assert query(warehouse, "SELECT count(*) FROM task_metrics") == (["count_star()"], [(7,)])
    assert query(warehouse, "SELECT count(*) FROM runs")[1] == [(0,)]
    _, rows = query(
        warehouse,
        "SELECT current_setting('enable_external_access'), current_setting('lock_configuration')",
    )
    assert rows == [(False, True)]


def test_the_connection_cannot_read_outside_the_lake_or_unlock_itself(
    warehouse: Path, tmp_path: Path
) -> None:
    """DuckDB's settings alone, without the statement check in `query`."""
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    sibling = warehouse.parent / "lake2"
    sibling.mkdir()
    (sibling / "x.csv").write_text("a\n1\n")
    with connect_read_only(warehouse) as con:
        for sql in [
            f"SELECT * FROM read_csv('{outside}')",
            f"SELECT * FROM read_csv('{sibling}/x.csv')",
            f"SELECT * FROM read_csv('{warehouse.parent}/lake/../lake2/x.csv')",
            "SELECT * FROM read_csv('/etc/passwd')",
            f"COPY (SELECT 1 AS a) TO '{tmp_path}/new.csv'",
            "INSTALL httpfs",
            "LOAD httpfs",
        ]:
            with pytest.raises(duckdb.PermissionException):
                con.execute(sql)
        for sql in [
            "SET enable_external_access = true",
            "RESET enable_external_access",
            "SET allowed_directories = ['/']",
            "SET lock_configuration = false",
            f"FROM enable_profiling(format = 'json', save_location = '{tmp_path}/p.json')",
        ]:
            with pytest.raises(duckdb.InvalidInputException, match="locked"):
                con.execute(sql)
        assert con.execute("SELECT count(*) FROM task_metrics").fetchall() == [(7,)]
    assert not (tmp_path / "new.csv").exists() and not (tmp_path / "p.json").exists()


QUERIES = [
    "SELECT 1",
    "FROM task_metrics",
    "VALUES (1)",
    "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
    "DESCRIBE task_metrics",
    "SHOW TABLES",
    "SUMMARIZE task_metrics",
    "PIVOT task_metrics ON metric IN ('acc') USING first(value)",
    "EXPLAIN SELECT 1",
    "explain analyze\n  SELECT count(*) FROM task_metrics",
    "SELECT 1; SELECT 2;",
]
NOT_QUERIES = [
    "COPY (SELECT 1 AS a) TO 'x.csv'",
    "COPY task_metrics FROM 'x.csv'",
    "EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO 'x.csv'",
    "EXPLAIN (FORMAT json) COPY (SELECT 1 AS a) TO 'x.csv'",
    "-- a comment\nEXPLAIN ANALYZE COPY (SELECT 1 AS a) TO 'x.csv'",
    "EXPLAIN /* c */ ANALYZE COPY (SELECT 1 AS a) TO 'x.csv'",
    "SELECT 1; COPY (SELECT 1 AS a) TO 'x.csv'",
    "EXPORT DATABASE 'x'",
    "IMPORT DATABASE 'x'",
    "COPY FROM DATABASE warehouse TO x",
    "ATTACH 'x.db' AS x",
    "DETACH x",
    "USE x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 1",
    "RESET threads",
    "SET VARIABLE v = 1",
    "PRAGMA enable_profiling",
    "CALL checkpoint()",
    "CHECKPOINT",
    "PREPARE p AS SELECT 1",
    "EXECUTE p",
    "CREATE TEMP TABLE t AS SELECT 1",
    "CREATE MACRO m() AS 1",
    "INSERT INTO task_metrics SELECT * FROM task_metrics",
    "UPDATE task_metrics SET value = 0",
    "DELETE FROM task_metrics",
    "DROP VIEW task_metrics",
    "ALTER VIEW task_metrics RENAME TO x",
    "VACUUM",
    "BEGIN",
    # Without an IN list, PIVOT first creates an enum type of the values (MULTI).
    "SELECT * FROM (PIVOT task_metrics ON metric USING first(value))",
]


def test_only_queries_pass_the_statement_check(warehouse: Path) -> None:
    with connect_read_only(warehouse) as con:
        for sql in QUERIES:
            assert query_statements(con, sql), sql
        for sql in NOT_QUERIES:
            with pytest.raises(ReadOnlyViolation, match="only queries run"):
                query_statements(con, sql)
    assert query(warehouse, "SELECT 1 AS a; SELECT 2 AS b") == (["b"], [(2,)])


def test_a_refused_statement_runs_nothing_before_it(warehouse: Path, tmp_path: Path) -> None:
    target = warehouse.parent / "lake" / "new.csv"
    with pytest.raises(ReadOnlyViolation, match="COPY statement"):
        query(warehouse, f"SELECT 1; COPY (SELECT 1 AS a) TO '{target}'")
    assert not target.exists()


def test_reads_outside_the_lake_are_read_only_violations(warehouse: Path) -> None:
    with pytest.raises(ReadOnlyViolation, match=r"reads files only under the lake .*/etc/passwd"):
        query(warehouse, "SELECT * FROM read_text('/etc/passwd')")
    with pytest.raises(ReadOnlyViolation, match="settings are locked"):
        query(warehouse, "FROM enable_logging()")


def test_bad_sql_and_parameters_are_errors_not_violations(warehouse: Path) -> None:
    with pytest.raises(ValueError, match="no SQL statement"):
        query(warehouse, "  ;  ")
    with pytest.raises(ValueError, match="single SQL statement"):
        query(warehouse, "SELECT ?; SELECT 1", [1])
    with pytest.raises(duckdb.ParserException):
        query(warehouse, "SELEKT 1")
    assert query(warehouse, "SELECT ? + 1 AS x", [41]) == (["x"], [(42,)])


def test_connections_open_together_share_the_locked_settings(warehouse: Path) -> None:
    """DuckDB gives connections to one file in one process one database instance: a second
    connection finds it locked already, and is accepted only for the same lake."""
    with connect_read_only(warehouse) as first, connect_read_only(warehouse) as second:
        assert second.execute("SELECT count(*) FROM task_metrics").fetchall() == [(7,)]
        assert first.execute("SELECT count(*) FROM task_metrics").fetchall() == [(7,)]
        with pytest.raises(ReadOnlyViolation, match="already open in this process"):
            connect_read_only(warehouse, lake=warehouse.parent)
    # Closed: the next connection starts a fresh instance for another lake.
    with connect_read_only(warehouse, lake=warehouse.parent) as con:
        assert con.execute("SELECT count(*) FROM task_metrics").fetchall() == [(7,)]
