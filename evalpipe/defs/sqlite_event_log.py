"""Dagster's SQLite event log, with its connections kept open between events.

Dagster's `SqliteEventLogStorage` builds a SQLAlchemy engine, opens the database file, and closes
it again for every statement it runs: two or three times for each event (the run's own file,
the cross-run index, the asset-check table). Closing the last connection to a WAL database also
checkpoints it. An ingest logs about thirty events per run directory, so on a batch of small
runs this open-and-close was about a quarter of the `evalpipe ingest` command's time.

`PooledSqliteEventLogStorage` keeps one engine per database file and lets SQLAlchemy's pool
hold its connection open. The files, schema, queries and locking (one statement at a time per
process, under Dagster's lock) are Dagster's. An open connection holds no transaction between
statements, so other processes (the daemon, the webserver, another ingest) read and write as
before, and SQLite's automatic checkpoints keep the WAL small. One thing had to change with it:
commits now land in a run file's WAL and reach the file itself only at checkpoints, so the
UI's live run logs poll for new events (Dagster's own watcher for Postgres) instead of waiting
for the file to change. Engines are bounded (the index and the most recently used run files),
a file deleted or replaced under an open connection (`dagster run wipe` in another process) is
reopened before the next statement, and a forked child drops its parent's connections rather
than share them.

`defs/instance.py` names this class in `dagster.yaml` for SQLite; Postgres is untouched. It
subclasses Dagster internals (`_connect`, `has_table`, the watcher), which is why Dagster is
pinned exactly; `evalpipe_tests/defs/test_sqlite_event_log.py` fails if an upgrade moves them.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from dagster._core.event_api import EventHandlerFn
from dagster._core.storage.event_log.polling_event_watcher import SqlPollingEventWatcher
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine

OPEN_FILES = 8
"""Engines kept at most: the index and the run files most recently written or read."""


class _OpenFile(NamedTuple):
    engine: Engine
    file: tuple[int, int] | None  # (device, inode) of the file the engine's connection is on


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` that reuses one open connection per database file."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._open: OrderedDict[str, _OpenFile] = OrderedDict()
        self._open_pid = os.getpid()
        self._tables_found: set[str] = set()
        self._poller = SqlPollingEventWatcher(self)  # starts a thread per run watched, no sooner
        super().__init__(base_dir, inst_data)  # a new index file is indexed through `_connect`

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine (under `_db_lock`), most recently used last; the least recent
        beyond OPEN_FILES close. A file deleted or replaced since it was opened (a `dagster run
        wipe` in another process) is opened afresh, so no write goes to a deleted file."""
        if self._open_pid != os.getpid():
            for engine, _ in self._open.values():
                engine.dispose(close=False)  # the parent's connections stay the parent's
            self._open.clear()
            self._open_pid = os.getpid()
            self._poller = SqlPollingEventWatcher(self)
        path = self.path_for_shard(shard)
        cached = self._open.pop(shard, None)
        if cached is not None and cached.file != _file_identity(path):
            cached.engine.dispose()
            self._initialized_dbs.discard(shard)
            cached = None
        if cached is None:
            if _file_identity(path) is None:
                self._initialized_dbs.discard(shard)  # deleted elsewhere: create it again
            engine = create_engine(
                self.conn_string_for_shard(shard),
                pool_size=1,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            cached = _OpenFile(engine, _file_identity(path))
        self._open[shard] = cached
        while len(self._open) > OPEN_FILES:
            _, oldest = self._open.popitem(last=False)
            oldest.engine.dispose()
        return cached.engine

    def _close_all(self) -> None:
        """Close every open file (the caller holds `_db_lock`)."""
        while self._open:
            _, (engine, _) = self._open.popitem()
            engine.dispose()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """Asked for every asset-check event (`supports_asset_checks`), sometimes inside an open
        connection: a table once found is remembered (migrations only add tables)."""
        if table_name not in self._tables_found and super().has_table(table_name):
            self._tables_found.add(table_name)
        return table_name in self._tables_found

    def watch(self, run_id: str, cursor: str | None, callback: EventHandlerFn) -> None:
        """The UI's live run logs, through Dagster's polling watcher (as on Postgres: every
        0.25 s while events arrive, backing off to 16 s while a run is quiet). With the
        writer's connection open, commits land in the run file's WAL, and a file-change
        notification would arrive before the commit is readable."""
        self._poller.watch_run(run_id, cursor, callback)

    def end_watch(self, run_id: str, handler: EventHandlerFn) -> None:
        self._poller.unwatch_run(run_id, handler)

    def wipe(self) -> None:
        """Close every file, then let Dagster delete the run files (files another process
        still has open are reopened there at its next statement)."""
        with self._db_lock:
            self._close_all()
        super().wipe()

    def dispose(self) -> None:
        self._poller.close()
        with self._db_lock:
            self._close_all()
        super().dispose()
