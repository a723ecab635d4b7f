"""Corrupt runs are caught at ingest, quarantined, shown by `evalpipe checks`, and kept out of
the leaderboards while the healthy run beside them flows on; fixed, they come back."""

import json
from pathlib import Path

import pytest

from evalpipe.cli import main
from evalpipe.sources.olmes.reader import find_run_dirs
from evalpipe.sources.olmes.samples import generate_dumps
from evalpipe_tests.conftest import is_old_format


def rewrite_metrics_all(run_dir: Path, edit) -> None:
    """Apply `edit(record) -> record` to every line of metrics-all.jsonl (duplicates included)."""
    path = run_dir / "metrics-all.jsonl"
    lines = [json.dumps(edit(json.loads(line))) for line in path.read_text().splitlines() if line]
    path.write_text("\n".join(lines) + "\n")


def set_score(task: str, score):
    def edit(record: dict) -> dict:
        if record["task_name"] == task:
            record["metrics"]["primary_score"] = score
        return record

    return edit


def shift_aggregates(record: dict) -> dict:
    if record["task_idx"] is None:
        record["metrics"]["primary_score"] += 0.01
    return record


def unshift_aggregates(record: dict) -> dict:
    if record["task_idx"] is None:
        record["metrics"]["primary_score"] -= 0.01
    return record


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory):
    """Five runs: one healthy, four each broken one way; ingested once through the CLI."""
    base = tmp_path_factory.mktemp("integrity")
    dumps = base / "dumps"
    generate_dumps(dumps, runs=5, tasks=9, instances=10, seed=11)
    runs = find_run_dirs(dumps)
    healthy = next(d for d in runs if is_old_format(d))
    broken = [d for d in runs if d != healthy]
    kinds = {}
    rewrite_metrics_all(broken[0], set_score("arc_easy:rc::olmes:full", 1.7))
    kinds["score_out_of_range"] = broken[0]
    predictions = sorted(broken[1].glob("task-*-predictions.jsonl"))[0]
    predictions.write_text("".join(predictions.read_text().splitlines(keepends=True)[:-3]))
    kinds["predictions_missing_rows"] = broken[1]
    rewrite_metrics_all(broken[2], shift_aggregates)
    kinds["aggregate_disagrees"] = broken[2]
    rewrite_metrics_all(broken[3], set_score("boolq:rc::olmes:full", "0.61"))
    kinds["type_broken_score"] = broken[3]

    env = {
        "EVALPIPE_HOME": str(base / "home"),
        "EVALPIPE_DUMPS": str(dumps),
        "EVALPIPE_SETTLE_SECONDS": "0",
        "DAGSTER_HOME": str(base / "dagster"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield {"dumps": dumps, "healthy": healthy, "kinds": kinds}


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rel(dumps: Path, run_dir: Path) -> str:
    return run_dir.relative_to(dumps).as_posix()


def test_ingest_exits_non_zero_naming_each_bad_run_and_check(corrupted, capsys) -> None:
    code, out, err = run_cli(capsys, "ingest")
    assert code == 1
    assert "5 ingested, 0 unchanged, 0 failed" in out
    expected = {
        "score_out_of_range": "task_results.task_results_schema_and_ranges",
        "predictions_missing_rows": "predictions.predictions_match_num_instances",
        "aggregate_disagrees": "task_results.aggregates_match_members",
        "type_broken_score": "task_results.task_results_schema_and_ranges",
    }
    for kind, run_dir in corrupted["kinds"].items():
        assert f"{rel(corrupted['dumps'], run_dir)}: {expected[kind]} (ERROR, blocking)" in err, (
            kind
        )
    assert rel(corrupted["dumps"], corrupted["healthy"]) not in err


def test_checks_command_lists_every_latest_result_as_json(corrupted, capsys) -> None:
    code, out, _ = run_cli(capsys, "checks", "--format", "json")
    assert code == 0
    results = json.loads(out)
    assert set(results[0]) == {
        "run_id",
        "asset",
        "check",
        "passed",
        "severity",
        "blocking",
        "description",
    }
    healthy = rel(corrupted["dumps"], corrupted["healthy"])
    assert all(r["passed"] for r in results if r["run_id"] == healthy)
    failed = {(r["run_id"], r["check"]) for r in results if not r["passed"] and r["blocking"]}
    aggregate_run = rel(corrupted["dumps"], corrupted["kinds"]["aggregate_disagrees"])
    assert (aggregate_run, "aggregates_match_members") in failed
    cross_run = [r for r in results if r["run_id"] is None]
    assert {r["check"] for r in cross_run} == {
        "only_healthy_runs_ranked",
        "warehouse_views_match_lake",
    }
    assert all(r["passed"] for r in cross_run)

    code, out, _ = run_cli(capsys, "checks", "--run", aggregate_run)
    assert code == 0 and "aggregates_match_members" in out and healthy not in out


def test_quarantined_runs_are_absent_downstream_and_the_healthy_one_is_present(
    corrupted, capsys
) -> None:
    _, out, _ = run_cli(
        capsys, "sql", "SELECT run_id, status, status_reason FROM runs", "--format", "json"
    )
    status = {r["run_id"]: r for r in json.loads(out)}
    healthy = rel(corrupted["dumps"], corrupted["healthy"])
    assert status[healthy]["status"] == "ok"
    for run_dir in corrupted["kinds"].values():
        row = status[rel(corrupted["dumps"], run_dir)]
        assert row["status"] == "quarantined" and row["status_reason"]
    _, out, _ = run_cli(
        capsys,
        "sql",
        "SELECT DISTINCT run_id FROM leaderboard_tasks UNION SELECT DISTINCT run_id FROM leaderboard_benchmarks",
        "--format",
        "json",
    )
    assert {r["run_id"] for r in json.loads(out)} == {healthy}
    _, out, _ = run_cli(
        capsys, "sql", "SELECT DISTINCT run_id FROM task_results", "--format", "json"
    )
    assert len(json.loads(out)) == 5, "quarantined runs' rows stay inspectable"


def test_a_fixed_run_returns_on_its_own(corrupted, capsys) -> None:
    run_dir = corrupted["kinds"]["aggregate_disagrees"]
    rewrite_metrics_all(run_dir, unshift_aggregates)
    code, out, _ = run_cli(capsys, "ingest")
    assert "1 ingested, 4 unchanged" in out and code == 0, "nothing newly ingested failed"
    assert out.count("quarantined") == 3, "the other three are still broken"
    _, out, _ = run_cli(
        capsys, "sql", "SELECT DISTINCT run_id FROM leaderboard_tasks", "--format", "json"
    )
    assert rel(corrupted["dumps"], run_dir) in {r["run_id"] for r in json.loads(out)}
