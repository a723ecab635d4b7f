"""Dagster's SQLite storage (the default instance), tuned for evalpipe's many small events.

Dagster's SQLite event log writes each event in its own transaction on a fresh connection, in
WAL mode, with SQLite's default `synchronous=FULL`: an fsync per event. An ingest logs about
thirty events per run directory (each table's materialization and plan, each check), so on a
batch of small runs the fsyncs alone took a third of the command's time. In WAL mode SQLite
recommends `synchronous=NORMAL`: the database stays consistent through any crash, and only the
newest transactions may roll back after a power cut or an operating-system crash (not after a
crash of the process). Nothing evalpipe keeps is lost that way: the lake makes its own writes
durable before it publishes them, and a run whose ingest record was lost is ingested again.
A Postgres instance is not affected.
"""

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine


def _normal_sync(connection: object, _record: object) -> None:
    if isinstance(connection, sqlite3.Connection):
        connection.execute("PRAGMA synchronous=NORMAL")


def relax_sqlite_sync() -> None:
    """Every SQLite connection SQLAlchemy opens in this process from now on (Dagster's run,
    event and schedule storage) uses `synchronous=NORMAL`."""
    if not event.contains(Engine, "connect", _normal_sync):
        event.listen(Engine, "connect", _normal_sync)
