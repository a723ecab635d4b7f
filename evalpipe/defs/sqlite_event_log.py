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
and a forked child drops its parent's connections rather than share them.

`defs/instance.py` names this class in `dagster.yaml` for SQLite; Postgres is untouched.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

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


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` that reuses one open connection per database file."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._tables_found: set[str] = set()
        self._poller: SqlPollingEventWatcher | None = None
        super().__init__(base_dir, inst_data)  # a new index file is indexed through `_connect`

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine, most recently used last; the least recent beyond OPEN_FILES close."""
        if self._engines_pid != os.getpid():
            for engine in self._engines.values():
                engine.dispose(close=False)  # the parent's connections stay the parent's
            self._engines.clear()
            self._engines_pid = os.getpid()
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                pool_size=1,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
        self._engines[shard] = engine
        while len(self._engines) > OPEN_FILES:
            _, oldest = self._engines.popitem(last=False)
            oldest.dispose()
        return engine

    def _close_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                _, engine = self._engines.popitem()
                engine.dispose()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """Asked for every asset-check event (`supports_asset_checks`), sometimes inside an open
        connection: a table once found is remembered (migrations only add tables)."""
        if table_name not in self._tables_found and super().has_table(table_name):
            self._tables_found.add(table_name)
        return table_name in self._tables_found

    def watch(self, run_id: str, cursor: str | None, callback: EventHandlerFn) -> None:
        """The UI's live run logs, through Dagster's polling watcher (as on Postgres): with the
        writer's connection open, commits land in the run file's WAL, and a file-change
        notification would arrive before the commit is readable."""
        if self._poller is None:
            self._poller = SqlPollingEventWatcher(self)
        self._poller.watch_run(run_id, cursor, callback)

    def end_watch(self, run_id: str, handler: EventHandlerFn) -> None:
        if self._poller is not None:
            self._poller.unwatch_run(run_id, handler)

    def wipe(self) -> None:
        """Close every file before Dagster deletes the run files."""
        self._close_engines()
        super().wipe()

    def dispose(self) -> None:
        if self._poller is not None:
            self._poller.close()
            self._poller = None
        self._close_engines()
        super().dispose()
