"""Dagster's SQLite storage in a process that loaded evalpipe's definitions: WAL with
`synchronous=NORMAL` (consistent through any crash, no fsync per event)."""

from pathlib import Path

import dagster as dg

import evalpipe.definitions  # noqa: F401 (loading the definitions tunes SQLite)


def test_event_log_connections_use_normal_sync(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        storage = instance.event_log_storage
        with storage.index_connection() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        with instance.run_storage.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
