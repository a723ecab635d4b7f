"""The Dagster instance's configuration, `$DAGSTER_HOME/dagster.yaml`, written from the settings.

One person: run, event-log and schedule storage in SQLite under `$DAGSTER_HOME` (Dagster's
default files), the event log through `PooledSqliteEventLogStorage` (`defs/sqlite_event_log.py`:
the same storage, keeping its connections open between events).
A team: set `DAGSTER_PG_URL` (`postgresql+psycopg2://user:password@host:5432/db`) and the same file
points all three storages at that Postgres database through dagster-postgres. The file names the
variable, never its value, so no password is written to disk; the daemon, the webserver and the
CLI each read it from their environment.

`make`, `evalpipe` and the tests write the file before opening the instance, so it always
matches the settings (there is no copy in the repository to drift or to trigger Dagster's
"dagster.yaml in the current folder will not be used" warning).

SQLite, tuned for evalpipe's many small events (`relax_sqlite_sync`): Dagster's SQLite event
log writes each event in its own transaction on a fresh connection, in WAL mode, with SQLite's
default `synchronous=FULL`: an fsync per event. An ingest logs about thirty events per run
directory (each table's materialization and plan, each check), so on a batch of small runs the
fsyncs alone took a third of the command's time. In WAL mode SQLite recommends
`synchronous=NORMAL`: the database stays consistent through any crash, and only the newest
transactions may roll back after a power cut or an operating-system crash (not after a crash
of the process). Nothing evalpipe keeps is lost that way: the lake makes its own writes durable
before it publishes them, and a run whose ingest record was lost is ingested again. Postgres is
not affected.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

from evalpipe.core.atomic import atomic_path
from evalpipe.core.config import Settings, load_settings

BASE = """\
# Written by evalpipe (evalpipe/defs/instance.py) from its settings; edits are overwritten.

# Everything that writes warehouse.duckdb runs in the `duckdb_warehouse` pool; DuckDB allows one
# writer, so every pool gets one slot (the per-run assets use no pool and run in parallel).
# Runs go through the queue: at most 4 at once.
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4

run_retries:
  enabled: false

telemetry:
  enabled: false

# Schedule and sensor ticks are pruned by the daemon (runs and asset history are evalpipe's
# `retention` job's business: see docs/retention.md). -1 keeps forever.
retention:
  schedule:
    purge_after_days: 90
  sensor:
    purge_after_days:
      skipped: 7
      failure: 30
      success: -1
"""

SQLITE = """
# SQLite files under DAGSTER_HOME (Dagster's default layout); the event log keeps its connections
# open between events (evalpipe/defs/sqlite_event_log.py).
event_log_storage:
  module: evalpipe.defs.sqlite_event_log
  class: PooledSqliteEventLogStorage
  config:
    base_dir: {event_logs}
"""

POSTGRES = """
# DAGSTER_PG_URL is set: runs, event logs and schedules live in that Postgres database.
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
"""


def _normal_sync(connection: object, _record: object) -> None:
    if isinstance(connection, sqlite3.Connection):
        connection.execute("PRAGMA synchronous=NORMAL")


def relax_sqlite_sync() -> None:
    """Every SQLite connection SQLAlchemy opens in this process from now on (Dagster's run,
    event and schedule storage) uses `synchronous=NORMAL`."""
    if not event.contains(Engine, "connect", _normal_sync):
        event.listen(Engine, "connect", _normal_sync)


def instance_yaml(settings: Settings) -> str:
    """The configuration for these settings: SQLite storage, or Postgres with DAGSTER_PG_URL."""
    if settings.dagster_pg_url:
        return BASE + POSTGRES
    return BASE + SQLITE.format(event_logs=json.dumps(str(event_logs_directory(settings))))


def event_logs_directory(settings: Settings) -> Path:
    """Where Dagster's SQLite storage keeps its event logs by default (`history/runs/`)."""
    return settings.dagster_home / "history" / "runs"


def write_instance_config(settings: Settings) -> Path:
    """Write `$DAGSTER_HOME/dagster.yaml` (atomically, only when it changes); return its path."""
    path = settings.dagster_home / "dagster.yaml"
    text = instance_yaml(settings)
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return path


def main() -> int:
    """`python -m evalpipe.defs.instance`: write the file for the current environment."""
    settings = load_settings()
    path = write_instance_config(settings)
    storage = "Postgres (DAGSTER_PG_URL)" if settings.dagster_pg_url else "SQLite"
    print(f"Dagster instance: {path} ({storage} storage)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
