"""The CLI as a person runs it: `evalpipe ingest`, `evalpipe sql`, against a real instance."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalpipe.cli import main
from evalpipe.core.config import Settings
from evalpipe.sources.olmes.reader import find_run_dirs
from evalpipe.sources.olmes.scanner import SCANNERS


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("EVALPIPE_HOME", str(settings.home))
    monkeypatch.setenv("EVALPIPE_DUMPS", str(settings.dumps))
    monkeypatch.setenv("EVALPIPE_SETTLE_SECONDS", "0")
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    return settings


def lake_bytes(settings: Settings) -> dict[str, bytes]:
    return {
        str(p.relative_to(settings.lake)): p.read_bytes()
        for p in sorted(settings.lake.rglob("*.parquet"))
    }


def sql_json(capsys: pytest.CaptureFixture, query: str) -> list[dict]:
    capsys.readouterr()
    assert main(["sql", query, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ingest_fills_the_warehouse_and_prints_a_summary(env: Settings, capsys) -> None:
    assert main(["ingest"]) == 0
    out = capsys.readouterr().out
    assert "4 run directories: 4 ingested, 0 unchanged, 0 failed" in out
    assert "core_9mcqa:rc::olmes:full=" in out
    runs = sql_json(capsys, "SELECT run_id, n_aggregates FROM runs ORDER BY run_id")
    assert [r["run_id"] for r in runs] == sorted(
        d.relative_to(env.dumps).as_posix() for d in find_run_dirs(env.dumps)
    )
    assert all(r["n_aggregates"] >= 1 for r in runs)


def test_ingesting_again_with_nothing_new_changes_nothing(env: Settings, capsys) -> None:
    assert main(["ingest"]) == 0
    before = lake_bytes(env)
    warehouse = env.warehouse.read_bytes()
    assert main(["ingest"]) == 0
    assert "0 ingested, 4 unchanged" in capsys.readouterr().out
    assert lake_bytes(env) == before
    assert env.warehouse.read_bytes() == warehouse


def test_forced_reingest_gives_identical_tables(env: Settings, capsys) -> None:
    assert main(["ingest"]) == 0
    query = "SELECT * EXCLUDE (ingested_at, status_checked_at) FROM runs ORDER BY run_id"
    tables = [sql_json(capsys, query), sql_json(capsys, "SELECT * FROM task_results ORDER BY ALL")]
    assert main(["ingest", "--force"]) == 0
    assert "4 ingested" in capsys.readouterr().out
    assert [
        sql_json(capsys, query),
        sql_json(capsys, "SELECT * FROM task_results ORDER BY ALL"),
    ] == tables


def test_a_malformed_run_fails_alone_and_is_named(env: Settings, capsys) -> None:
    bad = find_run_dirs(env.dumps)[2]
    with (bad / "metrics-all.jsonl").open("ab") as handle:
        handle.write(b'{"task_name": "x", "metrics": {oops}}\n')
    assert main(["ingest"]) == 1
    captured = capsys.readouterr()
    run_id = bad.relative_to(env.dumps).as_posix()
    assert "3 ingested, 0 unchanged, 1 failed" in captured.out
    assert f"  {run_id}\n" in captured.err
    assert f"{bad / 'metrics-all.jsonl'}:" in captured.err and "malformed JSON" in captured.err
    runs = sql_json(capsys, "SELECT run_id FROM runs")
    assert len(runs) == 3 and run_id not in {r["run_id"] for r in runs}


def test_ingest_speaks_json_and_csv_with_the_failures_named(env: Settings, capsys) -> None:
    bad = find_run_dirs(env.dumps)[2]
    with (bad / "metrics-all.jsonl").open("ab") as handle:
        handle.write(b'{"task_name": "x", "metrics": {oops}}\n')
    run_id = bad.relative_to(env.dumps).as_posix()

    assert main(["ingest", "--format", "json"]) == 1
    captured = capsys.readouterr()
    answer = json.loads(captured.out)  # stdout is only the answer; progress went to stderr
    assert (answer["scanned"], answer["ingested"], answer["failed"]) == (4, 3, 1)
    assert len(answer["runs"]) == 3 and run_id not in {r["run_id"] for r in answer["runs"]}
    assert answer["failed_runs"][0]["run_id"] == run_id
    assert "malformed JSON" in answer["failed_runs"][0]["errors"][0]
    assert "ingesting run directories" in captured.err

    assert main(["ingest", "--format", "csv"]) == 1  # the bad run is retried, and fails again
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 3 and {"run_id", "status", "aggregate_scores"} <= set(rows[0])


def test_sql_speaks_table_csv_and_json(env: Settings, capsys) -> None:
    assert main(["ingest"]) == 0
    capsys.readouterr()
    query = "SELECT task_name, primary_score FROM task_results WHERE is_aggregate ORDER BY 1, 2"
    assert main(["sql", query, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and set(rows[0]) == {"task_name", "primary_score"}
    assert main(["sql", query]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["task_name", "primary_score"] and set(table[1]) <= {"-", " "}


def test_sql_errors_and_missing_warehouse_are_clear(env: Settings, capsys) -> None:
    assert main(["sql", "SELECT 1"]) == 2
    assert "no warehouse yet" in capsys.readouterr().err
    assert main(["ingest"]) == 0
    assert main(["sql", "SELECT nope FROM runs"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["sql", "DELETE FROM runs"]) == 2


def test_ingest_with_a_missing_dumps_root_says_so(env: Settings, capsys, tmp_path: Path) -> None:
    assert main(["ingest", "--dumps", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_version_names_the_instance_scanner_in_use() -> None:
    """The scanner is chosen at import, so each choice is a fresh process, as a user runs it.
    On an install without the C scanner, insisting on it is a one-line error."""
    for choice in ("c", "python"):
        done = subprocess.run(
            [sys.executable, "-m", "evalpipe.cli", "--version"],
            env={**os.environ, "EVALPIPE_SCANNER": choice},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if choice in SCANNERS:
            assert done.returncode == 0, done.stderr
            assert done.stdout.endswith(f"(instance scanner: {choice})\n")
        else:
            assert done.returncode == 2
            assert done.stderr.startswith("error: EVALPIPE_SCANNER=c, but the C scanner was not")
            assert "Traceback" not in done.stderr
