"""The instance's dagster.yaml is written from the settings: SQLite by default, Postgres when
DAGSTER_PG_URL is set, and never the URL (a password) itself. Its SQLite storage, in a process
that loaded evalpipe's definitions, is WAL with `synchronous=NORMAL` (consistent through any
crash, no fsync per event)."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

import evalpipe.definitions  # noqa: F401 (loading the definitions tunes SQLite)
from evalpipe.core.config import load_settings
from evalpipe.defs.instance import write_instance_config


def settings_for(tmp_path: Path, **env: str):
    return load_settings({"EVALPIPE_HOME": str(tmp_path), **env})


def test_default_instance_uses_sqlite_under_dagster_home(tmp_path: Path) -> None:
    path = write_instance_config(settings_for(tmp_path))

    config = yaml.safe_load(path.read_text())
    assert path == tmp_path / "dagster" / "dagster.yaml"
    assert "storage" not in config  # Dagster's default: SQLite files under DAGSTER_HOME
    assert config["event_log_storage"] == {
        "module": "evalpipe.defs.sqlite_event_log",
        "class": "PooledSqliteEventLogStorage",
        "config": {"base_dir": str(tmp_path / "dagster" / "history" / "runs")},
    }
    assert config["concurrency"] == {
        "pools": {"default_limit": 1},
        "runs": {"max_concurrent_runs": 4},
    }


def test_pg_url_selects_postgres_storage_by_reference_only(tmp_path: Path) -> None:
    url = "postgresql+psycopg2://evalpipe:s3cret@127.0.0.1:5432/dagster"
    path = write_instance_config(settings_for(tmp_path, DAGSTER_PG_URL=url))

    text = path.read_text()
    assert yaml.safe_load(text)["storage"] == {
        "postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}
    }
    assert "s3cret" not in text
    assert "event_log_storage" not in yaml.safe_load(text)


def test_switching_back_rewrites_and_an_unchanged_file_is_left_alone(tmp_path: Path) -> None:
    pg = settings_for(tmp_path, DAGSTER_PG_URL="postgresql+psycopg2://u@h/db")
    path = write_instance_config(pg)
    write_instance_config(settings_for(tmp_path))
    assert "storage" not in yaml.safe_load(path.read_text())

    before = path.stat().st_mtime_ns
    write_instance_config(settings_for(tmp_path))
    assert path.stat().st_mtime_ns == before


def test_a_pg_url_without_the_driver_is_refused_with_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must start with postgresql\+psycopg2://"):
        settings_for(tmp_path, DAGSTER_PG_URL="postgresql://u:pw@h/db")


def test_event_log_connections_use_normal_sync(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with instance.event_log_storage.index_connection() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        with instance.run_storage.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
