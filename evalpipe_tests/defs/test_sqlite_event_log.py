"""The instance evalpipe configures for SQLite keeps Dagster's files and behaviour, and writes its
events over connections it keeps open: a handful of opens for a whole run, not two or three per
event; at most OPEN_FILES database files open at once; a forked child opens its own."""

from __future__ import annotations

import os
import queue
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.sqlite_storage import _event_logs_directory
from sqlalchemy import event
from sqlalchemy.engine import Engine

from evalpipe.core.config import load_settings
from evalpipe.defs.instance import write_instance_config
from evalpipe.defs.sqlite_event_log import OPEN_FILES, PooledSqliteEventLogStorage


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="numbers")])
def numbers() -> dg.MaterializeResult:
    return dg.MaterializeResult(
        check_results=[dg.AssetCheckResult(check_name="positive", passed=True)]
    )


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    settings = load_settings({"EVALPIPE_HOME": str(tmp_path)})
    write_instance_config(settings)
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def connects() -> Iterator[list[Path]]:
    """The file of every new SQLite connection SQLAlchemy opens in this process meanwhile."""
    opened: list[Path] = []

    def count(connection: sqlite3.Connection, _record: object) -> None:
        opened.append(Path(connection.execute("PRAGMA database_list").fetchone()[2]))

    event.listen(Engine, "connect", count)
    yield opened
    event.remove(Engine, "connect", count)


def test_the_event_log_is_pooled_in_dagsters_own_directory(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    dagster_home = str(tmp_path / "dagster")
    assert Path(storage._base_dir) == Path(_event_logs_directory(dagster_home))
    assert dg.materialize([numbers], instance=instance).success
    assert (Path(_event_logs_directory(dagster_home)) / "index.db").is_file()


def test_a_run_writes_its_events_over_a_few_open_connections(
    instance: dg.DagsterInstance, connects: list[Path]
) -> None:
    dg.materialize([numbers], instance=instance)  # the first run creates the index's tables
    connects.clear()

    result = dg.materialize([numbers], instance=instance)

    events = instance.all_logs(result.run_id)
    assert len(events) >= 10
    assert instance.get_latest_materialization_event(dg.AssetKey("numbers")).run_id == (
        result.run_id
    )
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("numbers"), "positive")]
    )
    assert [c.run_id for c in check.values()] == [result.run_id]
    base = Path(instance.event_log_storage._base_dir)
    event_log_connects = [p for p in connects if p.parent == base]
    assert {p.name for p in event_log_connects} == {f"{result.run_id}.db"}, (
        "only the run's new file is opened: the index is still open from the run before"
    )
    assert len(event_log_connects) <= 2, "opened to create it, then kept open for every event"


def test_at_most_open_files_databases_stay_open(instance: dg.DagsterInstance) -> None:
    runs = [dg.materialize([numbers], instance=instance) for _ in range(OPEN_FILES + 2)]

    open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    base = Path(instance.event_log_storage._base_dir).resolve()
    open_databases = {p for p in open_files if p.startswith(str(base)) and p.endswith(".db")}
    assert 1 < len(open_databases) <= OPEN_FILES
    assert str(base / f"{runs[-1].run_id}.db") in open_databases
    assert str(base / f"{runs[0].run_id}.db") not in open_databases
    assert all(instance.all_logs(run.run_id) for run in runs), "closed files still read"


def test_a_forked_child_opens_its_own_connections(
    instance: dg.DagsterInstance, connects: list[Path]
) -> None:
    dg.materialize([numbers], instance=instance)
    key = dg.AssetKey("numbers")
    connects.clear()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            instance.report_runless_asset_event(dg.AssetMaterialization(key, description="child"))
            code = 0 if any(p.name == "index.db" for p in connects) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child wrote over an index it opened"

    instance.report_runless_asset_event(dg.AssetMaterialization(key, description="parent"))
    assert all(p.name != "index.db" for p in connects), "the parent kept its own index open"
    records = instance.fetch_materializations(key, limit=3).records
    descriptions = [r.asset_materialization.description for r in records]
    assert descriptions[:2] == ["parent", "child"]


def test_a_file_wiped_by_another_process_is_reopened_not_written_blind(
    instance: dg.DagsterInstance,
) -> None:
    """`dagster run wipe` elsewhere deletes the run files this process has open: its next
    event goes to the new file, where every other process reads it."""
    run_id = dg.materialize([numbers], instance=instance).run_id
    base = instance.event_log_storage._base_dir
    PooledSqliteEventLogStorage(base).wipe()  # as another process would

    instance.event_log_storage.store_event(
        EventLogEntry(
            error_info=None,
            level="INFO",
            user_message="after",
            run_id=run_id,
            timestamp=time.time(),
        )
    )
    fresh = PooledSqliteEventLogStorage(base)
    assert [r.event_log_entry.user_message for r in fresh.get_records_for_run(run_id).records] == [
        "after"
    ]


def test_wipe_closes_the_files_it_deletes_and_the_storage_goes_on(
    instance: dg.DagsterInstance,
) -> None:
    first = dg.materialize([numbers], instance=instance)
    instance.event_log_storage.wipe()
    assert instance.all_logs(first.run_id) == []

    second = dg.materialize([numbers], instance=instance)
    assert instance.get_latest_materialization_event(dg.AssetKey("numbers")).run_id == (
        second.run_id
    )


def test_a_second_reader_watching_a_run_sees_each_new_event_while_the_writer_stays_open(
    instance: dg.DagsterInstance,
) -> None:
    """The webserver's live run logs: it watches the run's file while the run writes to it. The
    writer's connection stays open, so commits land in the WAL (`<run>.db-wal`) and reach
    `<run>.db` only at a checkpoint; the watcher wakes on either."""
    run_id = dg.materialize([numbers], instance=instance).run_id
    watcher = PooledSqliteEventLogStorage(instance.event_log_storage._base_dir)
    seen: queue.Queue[str] = queue.Queue()
    watcher.watch(run_id, None, lambda entry, _cursor: seen.put(entry.user_message))

    def write(message: str) -> None:
        entry = EventLogEntry(
            error_info=None,
            level="INFO",
            user_message=message,
            run_id=run_id,
            timestamp=time.time(),
        )
        instance.event_log_storage.store_event(entry)

    def delivered(message: str, within: float) -> bool:
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                if seen.get(timeout=left) == message:
                    return True
            except queue.Empty:
                break
        return False

    try:
        # The watch starts on a thread of its own: write until it is listening.
        assert any(delivered(f"hello {i}", 0.5) for i in range(20) if write(f"hello {i}") is None)
        for message in ("first", "second"):
            write(message)
            assert delivered(message, 10), f"{message!r} reached the watcher"
    finally:
        watcher.dispose()
