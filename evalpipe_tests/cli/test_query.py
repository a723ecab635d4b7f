"""The read-only commands as a person runs them, checked against the warehouse and by hand.

One generated dump is ingested once for the module (ingest is the slow part); tests that need
odd data (missing instances, a non-0/1 value, a quarantined run) use a copy of its lake with a
few rows changed and a warehouse rebuilt over the copy.
"""

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from evalpipe.cli import main
from evalpipe.core.config import Settings, load_settings
from evalpipe.core.output import FORMATS
from evalpipe.results.stats import mcnemar_exact, paired_bootstrap
from evalpipe.results.suites import BUILTIN_SUITES
from evalpipe.storage.lake import Lake
from evalpipe.storage.schemas import SCHEMAS
from evalpipe.storage.warehouse import build_warehouse, query

OLMO = "2025-10-08_posttrain/_eval_results/extra/allenai_OLMo-2-1124-7B__main"
LLAMA_OLD = "2025-10-08_posttrain/_eval_results/meta-llama_Llama-3.1-8B__main"
QWEN = "2025-11-03_posttrain/_eval_results/Qwen_Qwen2.5-7B__main"
LLAMA_NEW = "2025-11-03_posttrain/_eval_results/meta-llama_Llama-3.1-8B__main"
BOOLQ = "boolq:rc::olmes:full"
PIQA = "piqa:rc::olmes:full"
CORE = "core_9mcqa:rc::olmes:full"
DROPPED_DOCS = (0, 1, 2)


@pytest.fixture(scope="module")
def home(pristine_dumps: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The sample dumps ingested once; EVALPIPE_* point at it for the whole module."""
    root = tmp_path_factory.mktemp("query")
    shutil.copytree(pristine_dumps, root / "dumps")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALPIPE_HOME", str(root / "home"))
        mp.setenv("EVALPIPE_DUMPS", str(root / "dumps"))
        mp.setenv("EVALPIPE_SETTLE_SECONDS", "0")
        mp.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        assert main(["ingest"]) == 0
        yield load_settings()


@pytest.fixture(scope="module")
def altered(home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the lake where LLAMA_OLD lacks three boolq instances, OLMO has one piqa value
    of 0.5, and QWEN is quarantined."""
    root = tmp_path_factory.mktemp("altered")
    shutil.copytree(home.lake, root / "lake")
    lake = Lake(root / "lake")

    llama = lake.read("predictions", LLAMA_OLD)
    dropped = pc.and_(
        pc.equal(llama["task_name"], BOOLQ),
        pc.is_in(llama["doc_id"], pc.cast(DROPPED_DOCS, "int64")),
    )
    lake.write("predictions", LLAMA_OLD, llama.filter(pc.invert(dropped)))

    olmo = lake.read("predictions", OLMO).to_pylist()
    first_piqa = next(r for r in olmo if r["task_name"] == PIQA)
    first_piqa["metrics"] = json.dumps({**json.loads(first_piqa["metrics"]), "acc_per_char": 0.5})
    lake.write("predictions", OLMO, olmo)

    status = lake.read("run_status", QWEN).to_pylist()
    status[0].update(status="quarantined", status_reason="task_results.bad_check failed")
    lake.write("run_status", QWEN, status)

    build_warehouse(lake, root / "warehouse.duckdb")
    return load_settings({"EVALPIPE_HOME": str(root)})


@pytest.fixture
def use_altered(altered: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("EVALPIPE_HOME", str(altered.home))
    return altered


def run(capsys: pytest.CaptureFixture, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def as_json(capsys: pytest.CaptureFixture, *argv: str):
    return json.loads(run(capsys, *argv, "--format", "json"))


def as_csv(capsys: pytest.CaptureFixture, *argv: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(run(capsys, *argv, "--format", "csv"))))


def fails(capsys: pytest.CaptureFixture, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 2
    return capsys.readouterr().err


def warehouse_rows(settings: Settings, sql: str, params: list | None = None) -> list[dict]:
    columns, rows = query(settings.warehouse, sql, params)
    return [dict(zip(columns, row, strict=True)) for row in rows]


COMMANDS = {
    "runs": ["runs"],
    "show": ["show", OLMO],
    "leaderboard": ["leaderboard"],
    "compare": ["compare", OLMO, LLAMA_OLD],
    "significance": ["significance", OLMO, LLAMA_OLD, "--task", BOOLQ, "--iterations", "200"],
    "export": ["export", OLMO, "--output", "{tmp}/olmo.json"],
    "stats": ["stats"],
    "sql": ["sql", "SELECT run_id FROM runs"],
}


def command_argv(command: str, tmp_path: Path) -> list[str]:
    return [arg.replace("{tmp}", str(tmp_path)) for arg in COMMANDS[command]]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_speaks_every_format(
    home, capsys, tmp_path: Path, command: str, fmt: str
) -> None:
    out = run(capsys, *command_argv(command, tmp_path), "--format", fmt)
    if fmt == "json":
        assert json.loads(out)
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(out)))
        assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows)
    elif fmt == "markdown":
        assert all(line.startswith(("|", "## ")) for line in out.splitlines() if line)
    else:
        lines = out.splitlines()
        assert not any(line.startswith("|") for line in lines)
        assert any(line and set(line) <= {"-", " "} for line in lines)


def test_runs_lists_every_run_and_filters_by_model(home, capsys) -> None:
    runs = as_json(capsys, "runs")
    expected = warehouse_rows(home, "SELECT run_id, model, status, n_tasks FROM runs ORDER BY 1")
    assert [{k: r[k] for k in expected[0]} for r in runs] == expected
    assert list(runs[0]) == [
        "run_id", "model", "revision", "status", "standing", "superseded_by", "reason",
        "n_tasks", "n_aggregates", "ingested_at", "archived_to",
    ]  # fmt: skip
    assert {r["archived_to"] for r in runs} == {None}, "nothing archived yet"
    by_id = {r["run_id"]: r for r in runs}
    # LLAMA_NEW re-ran LLAMA_OLD's model later: the newest evaluated_at wins every task.
    assert by_id[LLAMA_OLD]["superseded_by"] == LLAMA_NEW
    assert by_id[LLAMA_OLD]["standing"] in ("superseded", "partly superseded")
    assert by_id[LLAMA_NEW]["standing"] == "ranked"
    assert {r["run_id"] for r in as_csv(capsys, "runs", "--model", "llama")} == {
        LLAMA_OLD,
        LLAMA_NEW,
    }
    assert [r["run_id"] for r in as_json(capsys, "runs", "--model", "allenai/*")] == [OLMO]
    assert as_json(capsys, "runs", "--model", "Llama-3_1*") == []


def test_show_has_the_run_its_scores_and_failed_checks(home, capsys) -> None:
    shown = as_json(capsys, "show", OLMO)
    assert set(shown) == {"run", "scores", "failed_checks"}
    assert shown["run"]["run_id"] == OLMO and shown["run"]["status"] == "ok"
    scores = warehouse_rows(
        home,
        "SELECT task_name, is_aggregate, primary_score FROM task_results WHERE run_id = ?",
        [OLMO],
    )
    assert sorted((s["task_name"], s["primary_score"]) for s in shown["scores"]) == sorted(
        (s["task_name"], s["primary_score"]) for s in scores
    )
    assert [s["is_aggregate"] for s in shown["scores"]][:2] == [True, True]
    failed = warehouse_rows(
        home, 'SELECT "check" FROM run_checks WHERE run_id = ? AND NOT passed', [OLMO]
    )
    assert sorted(c["check"] for c in shown["failed_checks"]) == sorted(c["check"] for c in failed)
    text = run(capsys, "show", OLMO)
    assert text.startswith("run:\n") and "\n\nscores:\n" in text
    # An empty section says so instead of printing a header over no rows.
    assert ("\n\nfailed checks:\n" if failed else "\n\nfailed checks: none") in text
    assert {r["task_name"] for r in as_csv(capsys, "show", OLMO)} == {
        s["task_name"] for s in scores
    }


def test_show_gives_a_quarantined_runs_reason(use_altered, capsys) -> None:
    run_row = as_json(capsys, "show", QWEN)["run"]
    assert (run_row["status"], run_row["status_reason"]) == (
        "quarantined",
        "task_results.bad_check failed",
    )
    assert "task_results.bad_check failed" in run(capsys, "show", QWEN, "--format", "markdown")


def test_an_unknown_run_exits_2_with_close_matches(home, capsys) -> None:
    err = fails(capsys, "show", "Qwen_Qwen2.5-7B__main")
    assert "no run 'Qwen_Qwen2.5-7B__main'; see `evalpipe runs`" in err
    assert f"did you mean: {QWEN}" in err
    for argv in (
        ["compare", OLMO, "nope"],
        ["export", "nope", "--output", "x.json"],
        ["significance", "nope", OLMO, "--task", BOOLQ],
    ):
        assert "no run 'nope'" in fails(capsys, *argv)


def test_leaderboard_overall_benchmark_and_task_boards(home, capsys) -> None:
    overall = warehouse_rows(home, "SELECT * FROM leaderboard_overall ORDER BY rank, model")
    assert [(r["model"], r["rank"]) for r in as_json(capsys, "leaderboard")] == [
        (r["model"], r["rank"]) for r in overall
    ]
    assert {r["rank"] for r in as_json(capsys, "leaderboard", "--top", "1")} == {1}

    board = as_csv(capsys, "leaderboard", "--benchmark", CORE)
    expected = warehouse_rows(
        home, "SELECT * FROM leaderboard_benchmarks WHERE task_name = ? ORDER BY rank", [CORE]
    )
    assert [(r["model"], float(r["primary_score"])) for r in board] == [
        (r["model"], r["primary_score"]) for r in expected
    ]
    err = fails(capsys, "leaderboard", "--benchmark", "core_9mcqa")
    assert "no benchmark 'core_9mcqa'" in err and CORE in err

    tasks = as_json(capsys, "leaderboard", "--task", "arc_*", "--top", "1")
    assert {r["task_name"] for r in tasks} == {
        "arc_challenge:rc::olmes:full",
        "arc_easy:rc::olmes:full",
    }
    assert all(r["rank"] == 1 for r in tasks)
    assert {r["task_name"] for r in as_json(capsys, "leaderboard", "--task", "boolq")} == {BOOLQ}
    with pytest.raises(SystemExit):
        main(["leaderboard", "--task", "x", "--benchmark", "y"])
    err = fails(capsys, "leaderboard", "--task", "boolq:rc::olmes:fulll")
    assert "no task 'boolq:rc::olmes:fulll'" in err and BOOLQ in err


def test_an_empty_answer_says_so(home, capsys) -> None:
    assert run(capsys, "runs", "--model", "nosuch*").rstrip().endswith("(no rows)")
    assert (
        run(capsys, "runs", "--model", "nosuch*", "--format", "markdown")
        .rstrip()
        .endswith("_no rows_")
    )
    assert as_json(capsys, "runs", "--model", "nosuch*") == []


def test_compare_shows_config_differences_scores_deltas_and_winner(home, capsys) -> None:
    answer = as_json(capsys, "compare", OLMO, LLAMA_OLD, LLAMA_NEW)
    assert set(answer) == {"runs", "config_differences", "scores", "winner"}
    assert [r["run_id"] for r in answer["runs"]] == [OLMO, LLAMA_OLD, LLAMA_NEW]
    model_diffs = {
        d["key"]: d for d in answer["config_differences"] if d["section"] == "model_config"
    }
    assert json.loads(model_diffs["model"]["A"]) == "allenai/OLMo-2-1124-7B"
    assert json.loads(model_diffs["model"]["B"]) == "meta-llama/Llama-3.1-8B"

    scores = {
        (r["run_id"], r["task_name"]): r["primary_score"]
        for r in warehouse_rows(home, "SELECT * FROM task_results WHERE NOT is_aggregate")
    }
    by_task = {r["task_name"]: r for r in answer["scores"]}
    assert by_task[BOOLQ]["A"] == scores[(OLMO, BOOLQ)]
    assert by_task[BOOLQ]["C-A"] == pytest.approx(
        scores[(LLAMA_NEW, BOOLQ)] - scores[(OLMO, BOOLQ)]
    )

    common = [t for (r, t), s in scores.items() if r == OLMO and s is not None]
    common = [
        t for t in common if all(scores.get((r, t)) is not None for r in (LLAMA_OLD, LLAMA_NEW))
    ]
    means = {r: np.mean([scores[(r, t)] for t in common]) for r in (OLMO, LLAMA_OLD, LLAMA_NEW)}
    best = max(means, key=means.get)
    assert answer["winner"]["run_id"] == best
    assert answer["winner"]["mean_score"] == pytest.approx(means[best])
    assert answer["winner"]["common_tasks"] == len(common)

    rows = as_csv(capsys, "compare", OLMO, LLAMA_OLD)
    assert list(rows[0]) == ["task_name", "is_aggregate", "primary_metric", "A", "B", "B-A"]
    text = run(capsys, "compare", OLMO, LLAMA_OLD, "--format", "markdown")
    assert "## config differences" in text and "## winner (mean over common tasks)" in text
    assert "at least two run ids" in fails(capsys, "compare", OLMO)


def paired_by_hand(settings: Settings, task: str, run_a: str, run_b: str, metric: str):
    """Both runs' values of `task` from the lake files, paired on doc_id in doc order."""
    lake = Lake(settings.lake)
    values = []
    for run_id in (run_a, run_b):
        rows = lake.read("predictions", run_id).to_pylist()
        values.append(
            {r["doc_id"]: json.loads(r["metrics"])[metric] for r in rows if r["task_name"] == task}
        )
    docs = sorted(values[0].keys() & values[1].keys())
    return (
        np.array([values[0][d] for d in docs]),
        np.array([values[1][d] for d in docs]),
        len(values[0].keys() - docs),
        len(values[1].keys() - docs),
    )


def test_significance_matches_the_paired_bootstrap(home, capsys) -> None:
    answer = as_json(
        capsys,
        "significance",
        OLMO,
        LLAMA_OLD,
        "--task",
        BOOLQ,
        "--iterations",
        "3000",
        "--seed",
        "5",
    )
    a, b, _, _ = paired_by_hand(home, BOOLQ, OLMO, LLAMA_OLD, "acc_raw")
    expected = paired_bootstrap(a, b, iterations=3000, seed=5)
    assert answer["n_paired"] == len(a) == 12 and answer["only_in_a"] == answer["only_in_b"] == 0
    for field in ("mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value"):
        assert answer[field] == pytest.approx(getattr(expected, field)), field
    assert (answer["method"], answer["iterations"], answer["seed"]) == ("bootstrap", 3000, 5)
    assert answer["metric"] == "acc_raw"


def test_mcnemar_on_a_0_1_metric(home, capsys) -> None:
    (row,) = as_csv(capsys, "significance", OLMO, LLAMA_NEW, "--task", BOOLQ, "--method", "mcnemar")
    a, b, _, _ = paired_by_hand(home, BOOLQ, OLMO, LLAMA_NEW, "acc_raw")
    expected = mcnemar_exact(a, b)
    assert float(row["p_value"]) == pytest.approx(expected.p_value)
    assert (int(row["n01"]), int(row["n10"])) == (expected.n01, expected.n10)
    assert row["method"] == "mcnemar" and row["ci_low"] and row["ci_high"]


def test_an_aggregate_is_stratified_by_member_and_macro_averaged(home, capsys) -> None:
    answer = as_json(capsys, "significance", OLMO, QWEN, "--task", CORE, "--iterations", "500")
    metrics = {
        r["task_name"]: r["primary_metric"]
        for r in warehouse_rows(home, "SELECT * FROM task_results WHERE run_id = ?", [OLMO])
    }
    a, b, strata = [], [], []
    for member in sorted(BUILTIN_SUITES[CORE].members):
        member_a, member_b, _, _ = paired_by_hand(home, member, OLMO, QWEN, metrics[member])
        a += list(member_a)
        b += list(member_b)
        strata += [member] * len(member_a)
    expected = paired_bootstrap(
        np.array(a), np.array(b), iterations=500, seed=0, strata=np.array(strata)
    )
    assert answer["strata"] == 9 and answer["n_paired"] == len(a) == 9 * 12
    for field in ("mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value"):
        assert answer[field] == pytest.approx(getattr(expected, field)), field
    summary = warehouse_rows(
        home, "SELECT run_id, primary_score FROM task_results WHERE task_name = ?", [CORE]
    )
    score = {r["run_id"]: r["primary_score"] for r in summary}
    assert answer["mean_a"] == pytest.approx(score[OLMO]) and answer["mean_b"] == pytest.approx(
        score[QWEN]
    )
    assert "use --method bootstrap" in fails(
        capsys, "significance", OLMO, QWEN, "--task", CORE, "--method", "mcnemar"
    )


def test_instances_in_one_run_only_are_counted(use_altered, capsys) -> None:
    answer = as_json(
        capsys, "significance", OLMO, LLAMA_OLD, "--task", BOOLQ, "--iterations", "200"
    )
    assert (answer["n_paired"], answer["only_in_a"], answer["only_in_b"]) == (9, 3, 0)
    a, b, only_a, _ = paired_by_hand(use_altered, BOOLQ, OLMO, LLAMA_OLD, "acc_raw")
    assert only_a == len(DROPPED_DOCS)
    assert answer["mean_a"] == pytest.approx(a.mean()) and answer["mean_b"] == pytest.approx(
        b.mean()
    )
    swapped = as_json(
        capsys, "significance", LLAMA_OLD, OLMO, "--task", BOOLQ, "--iterations", "200"
    )
    assert (swapped["only_in_a"], swapped["only_in_b"]) == (0, 3)


def test_mcnemar_refuses_values_other_than_0_and_1(use_altered, capsys) -> None:
    err = fails(capsys, "significance", OLMO, LLAMA_OLD, "--task", PIQA, "--method", "mcnemar")
    assert "needs 0/1 instance values" in err
    answer = as_json(capsys, "significance", OLMO, LLAMA_OLD, "--task", PIQA, "--iterations", "200")
    assert answer["n_paired"] == 12


def test_significance_argument_errors_are_clear(home, capsys) -> None:
    assert "no task 'nope'" in fails(capsys, "significance", OLMO, QWEN, "--task", "nope")
    assert "same run" in fails(capsys, "significance", OLMO, OLMO, "--task", BOOLQ)
    with pytest.raises(SystemExit):
        main(["significance", OLMO, QWEN, "--task", BOOLQ, "--iterations", "0"])


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_export_round_trips(home, capsys, tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"olmo{suffix}"
    (row,) = as_csv(capsys, "export", OLMO, "--output", str(target))
    expected = warehouse_rows(
        home, "SELECT * FROM task_results WHERE run_id = ? ORDER BY task_name", [OLMO]
    )
    assert int(row["rows"]) == len(expected) and row["output"] == str(target)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    if suffix == ".parquet":
        exported = sorted(pq.read_table(target).to_pylist(), key=lambda r: r["task_name"])
        assert exported == expected
        return
    text = target.read_text(encoding="utf-8")
    exported = json.loads(text) if suffix == ".json" else list(csv.DictReader(io.StringIO(text)))
    exported.sort(key=lambda r: r["task_name"])
    assert [r["task_name"] for r in exported] == [r["task_name"] for r in expected]
    for got, want in zip(exported, expected, strict=True):
        assert got["model_config"] == want["model_config"]
        assert datetime.fromisoformat(got["evaluated_at"]) == want["evaluated_at"]
        score = got["primary_score"]
        assert (float(score) if score not in (None, "") else None) == want["primary_score"]


def test_export_refuses_an_unknown_extension(home, capsys, tmp_path: Path) -> None:
    assert "unknown export format '.xlsx'" in fails(
        capsys, "export", OLMO, "--output", str(tmp_path / "x.xlsx")
    )
    assert not list(tmp_path.iterdir())


def test_stats_counts_what_the_warehouse_holds(use_altered, capsys) -> None:
    answer = as_json(capsys, "stats")
    (counts,) = warehouse_rows(
        use_altered,
        "SELECT count(DISTINCT dump) AS dumps, count(*) AS runs, max(ingested_at) AS last FROM runs",
    )
    assert (answer["dumps"], answer["runs"]) == (counts["dumps"], counts["runs"]) == (2, 4)
    assert datetime.fromisoformat(answer["last_ingest"]) == counts["last"]
    (tasks,) = warehouse_rows(
        use_altered, "SELECT count(DISTINCT task_name) AS n, count(*) AS rows FROM task_results"
    )
    assert (answer["tasks"], answer["task_rows"]) == (tasks["n"], tasks["rows"])
    assert (
        answer["instances"]
        == warehouse_rows(use_altered, "SELECT count(*) AS n FROM predictions")[0]["n"]
    )
    assert answer["lake_mb"] == pytest.approx(Lake(use_altered.lake).size_bytes() / 1e6)
    assert (answer["quarantined_runs"], answer["quarantined_run_ids"]) == (1, [QWEN])
    (row,) = as_csv(capsys, "stats")
    assert row["quarantined_run_ids"] == QWEN


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "sql"])
def test_a_missing_warehouse_is_a_clear_error(
    capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str
) -> None:
    monkeypatch.setenv("EVALPIPE_HOME", str(tmp_path))
    assert "no warehouse yet" in fails(capsys, *command_argv(command, tmp_path))


# `evalpipe sql` is read-only for real: every statement below exits 2 with a read-only error
# and leaves every file of the home as it was and nothing new outside it. {lake}, {partition}
# (a committed lake file), {outside} (an empty directory outside the home) and {secret} (a file
# there) are filled in per test.
REFUSED_SQL = {
    "copy_to_a_lake_partition": "COPY (SELECT * FROM task_results LIMIT 3) TO '{partition}' "
    "(FORMAT parquet)",
    "copy_to_a_new_file_in_the_lake": "COPY (SELECT 1 AS x) TO '{lake}/task_results/new.parquet'",
    "copy_to_a_new_file_outside": "COPY (SELECT run_id FROM runs) TO '{outside}/runs.csv'",
    "copy_after_a_query": "SELECT 1; COPY (SELECT 1 AS x) TO '{outside}/x.csv'",
    "explain_analyze_of_a_copy": "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{outside}/x.csv'",
    "attach_and_create_table": "ATTACH '{outside}/x.db' AS x; CREATE TABLE x.t AS SELECT 1 AS a",
    "create_temp_table": "CREATE TEMP TABLE t AS SELECT * FROM runs",
    "export_database_outside": "EXPORT DATABASE '{outside}/export'",
    "export_database_into_the_lake": "EXPORT DATABASE '{lake}/export'",
    "install_extension": "INSTALL httpfs",
    "load_extension": "LOAD httpfs",
    "set_enable_external_access": "SET enable_external_access = true",
    "reset_enable_external_access": "RESET enable_external_access",
    "set_allowed_directories": "SET allowed_directories = ['/']",
    "pragma_profiling_output": "PRAGMA enable_profiling",
    "call_checkpoint": "CALL checkpoint()",
    "prepare_a_copy": "PREPARE p AS COPY (SELECT 1 AS x) TO '{outside}/x.csv'",
    "enable_logging_to_a_file": "FROM enable_logging(storage = 'file', "
    "storage_path = '{outside}/log')",
    "enable_profiling_to_a_file": "FROM enable_profiling(format = 'json', "
    "save_location = '{outside}/profile.json')",
    "read_csv_etc_passwd": "SELECT * FROM read_csv('/etc/passwd')",
    "read_a_file_outside": "SELECT * FROM read_text('{secret}')",
    "read_outside_through_dot_dot": "SELECT * FROM read_text('{lake}/../{secret_from_lake}')",
    "list_files_outside": "SELECT * FROM glob('/etc/*')",
    "read_over_http": "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
}
READ_ONLY_ERROR = "error: evalpipe sql is read-only: "


def file_digests(root: Path) -> dict[str, str]:
    """Every file under `root` by relative path, with a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("name", REFUSED_SQL)
def test_sql_cannot_write_change_settings_or_read_outside_the_lake(
    home, capsys, tmp_path: Path, name: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("not for evalpipe sql\n")
    partition = Lake(home.lake).partition_file("task_results", OLMO)
    sql = REFUSED_SQL[name].format(
        lake=home.lake,
        partition=partition,
        outside=outside,
        secret=secret,
        secret_from_lake=Path(os.path.relpath(secret, home.lake.parent)),
    )
    before = file_digests(home.home)
    partition_bytes = partition.read_bytes()

    err = fails(capsys, "sql", sql)

    assert err.startswith(READ_ONLY_ERROR) and "Traceback" not in err, err
    assert partition.read_bytes() == partition_bytes
    assert file_digests(home.home) == before
    assert not list(outside.iterdir())


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("COPY (SELECT 1 AS x) TO '{outside}/x.csv'", "DuckDB parses this as a COPY statement"),
        ("SET enable_external_access = true", "DuckDB parses this as a SET statement"),
        ("FROM enable_logging()", 'Cannot change configuration option "enable_logging"'),
        ("SELECT * FROM read_csv('/etc/passwd')", 'Cannot access file "/etc/passwd"'),
    ],
)
def test_a_refused_statement_says_why(home, capsys, tmp_path: Path, sql: str, said: str) -> None:
    err = fails(capsys, "sql", sql.format(outside=tmp_path))
    assert err.startswith(READ_ONLY_ERROR) and said in err, err
    if "read_csv" in sql:
        assert f"reads files only under the lake {home.lake}" in err
    assert not list(tmp_path.iterdir())


def test_sql_reads_every_view_and_the_lake_itself(home, capsys) -> None:
    lake = Lake(home.lake)
    views = as_json(capsys, "sql", "SELECT view_name FROM duckdb_views() WHERE NOT internal")
    names = sorted(v["view_name"] for v in views)
    assert names == sorted({*SCHEMAS, *lake.derived_tables()})
    for name in names:
        (row,) = as_json(capsys, "sql", f'SELECT count(*) AS n FROM "{name}"')
        expected = (
            lake.read_derived(name).num_rows
            if name in lake.derived_tables()
            else lake.count_rows(name)
        )
        assert row["n"] == expected, name
    partition = lake.partition_file("task_results", OLMO)
    (row,) = as_json(capsys, "sql", f"SELECT count(*) AS n FROM read_parquet('{partition}')")
    assert row["n"] == lake.read("task_results", OLMO).num_rows
    for sql in [
        "DESCRIBE runs",
        "SHOW TABLES",
        "SUMMARIZE runs",
        "EXPLAIN SELECT count(*) FROM predictions",
        "EXPLAIN ANALYZE SELECT count(*) FROM predictions",
        "WITH t AS (SELECT * FROM task_results) SELECT run_id, model_config->>'model' FROM t",
        "SELECT 1 AS a; SELECT 2 AS b",
    ]:
        assert run(capsys, "sql", sql).strip(), sql
