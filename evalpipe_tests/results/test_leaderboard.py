"""Leaderboards: hand-computed tiny example, brute-force win rates, normalisation, scale."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from evalpipe.results.leaderboard import (
    BENCHMARK_COLUMNS,
    OVERALL_COLUMNS,
    RUNS_COLUMNS,
    STANDINGS,
    TASK_COLUMNS,
    build_leaderboards,
    declared_tasks,
    leaderboard_benchmarks,
    leaderboard_overall,
    leaderboard_tasks,
)
from evalpipe.results.suites import Suite

DAY1 = pd.Timestamp("2025-01-01", tz="UTC")
DAY2 = pd.Timestamp("2025-01-02", tz="UTC")
DAY3 = pd.Timestamp("2025-01-03", tz="UTC")


def _runs(rows: list[tuple[str, str, str | None, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["run_id", "model", "revision", "status"])


def _results(rows: list[tuple[str, str, float, pd.Timestamp]], aggregate=()) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["run_id", "task_name", "primary_score", "evaluated_at"])
    is_aggregate = frame["task_name"].isin(aggregate)
    return frame.assign(
        task_idx=pd.array([None if agg else 0 for agg in is_aggregate], dtype="Int64"),
        is_aggregate=is_aggregate,
        primary_metric="acc_norm",
        num_instances=100,
    )


@pytest.fixture
def tiny() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """3 healthy models x 3 tasks, a re-run of m1 on t1, a tie on t2, two quarantined runs."""
    runs = _runs(
        [
            ("r1", "m1", "main", "ok"),
            ("r1b", "m1", "main", "ok"),
            ("r2", "m2", "main", "ok"),
            ("r2q", "m2", "main", "quarantined"),
            ("r3", "m3", "main", "ok"),
            ("rq", "m4", "main", "quarantined"),
        ]
    )
    results = _results(
        [
            ("r1", "t1", 0.50, DAY1),
            ("r1", "t2", 0.40, DAY1),
            ("r1", "t3", 0.30, DAY1),
            ("r1", "suite", 0.40, DAY1),
            ("r1b", "t1", 0.70, DAY2),  # supersedes r1's t1
            ("r2", "t1", 0.60, DAY1),
            ("r2", "t2", 0.60, DAY1),
            ("r2", "t3", 0.90, DAY1),
            ("r2", "suite", 0.70, DAY1),
            ("r2q", "t1", 0.05, DAY3),  # newer, but quarantined: must not supersede r2
            ("r3", "t1", 0.80, DAY1),
            ("r3", "t2", 0.60, DAY1),  # ties m2 on t2; m3 never ran t3
            ("r3", "suite", 0.70, DAY1),
            ("rq", "t1", 0.99, DAY1),
            ("rq", "t2", 0.99, DAY1),
            ("rq", "suite", 0.99, DAY1),
        ],
        aggregate={"suite"},
    )
    choices = pd.DataFrame(
        {"run_id": ["r1", "r2", "r1"], "task_name": ["t1", "t1", "t3"], "n_choices": [4, 4, 2]}
    )
    return runs, results, choices


def test_task_leaderboard_hand_computed(tiny) -> None:
    runs, results, _ = tiny

    board = leaderboard_tasks(runs, results)

    assert board.superseded == 1
    assert board.table.columns.tolist() == TASK_COLUMNS
    got = board.table[["task_name", "rank", "model", "primary_score", "run_id"]]
    assert got.values.tolist() == [
        ["t1", 1, "m3", 0.80, "r3"],
        ["t1", 2, "m1", 0.70, "r1b"],
        ["t1", 3, "m2", 0.60, "r2"],
        ["t2", 1, "m2", 0.60, "r2"],
        ["t2", 1, "m3", 0.60, "r3"],
        ["t2", 3, "m1", 0.40, "r1"],
        ["t3", 1, "m2", 0.90, "r2"],
        ["t3", 2, "m1", 0.30, "r1"],
    ]
    assert str(board.table["rank"].dtype) == "Int64"


def test_quarantined_runs_are_absent_but_healthy_neighbours_stay(tiny) -> None:
    runs, results, _ = tiny

    table = leaderboard_tasks(runs, results).table

    assert "m4" not in set(table["model"])
    assert not table["run_id"].isin(["rq", "r2q"]).any()
    assert table.query("model == 'm2' and task_name == 't1'")["run_id"].tolist() == ["r2"]


def test_benchmark_leaderboard_uses_aggregate_rows_only(tiny) -> None:
    runs, results, _ = tiny

    board = leaderboard_benchmarks(runs, results)

    got = board.table[["task_name", "rank", "model", "primary_score"]].values.tolist()
    assert got == [["suite", 1, "m2", 0.7], ["suite", 1, "m3", 0.7], ["suite", 3, "m1", 0.4]]
    assert board.superseded == 0


def test_rerun_tie_on_timestamp_broken_by_run_id() -> None:
    runs = _runs([("run-a", "m", "main", "ok"), ("run-b", "m", "main", "ok")])
    results = _results([("run-b", "t", 0.2, DAY1), ("run-a", "t", 0.9, DAY1)])

    for _ in range(2):  # input order must not matter
        board = leaderboard_tasks(runs, results)
        assert board.table["run_id"].tolist() == ["run-b"]
        assert board.superseded == 1
        results = results.iloc[::-1]


def test_revisions_are_separate_entries_including_missing_revision() -> None:
    runs = _runs(
        [("r1", "m", "main", "ok"), ("r2", "m", "step1000", "ok"), ("r3", "m", None, "ok")]
    )
    results = _results([("r1", "t", 0.5, DAY1), ("r2", "t", 0.6, DAY1), ("r3", "t", 0.7, DAY1)])

    table = leaderboard_tasks(runs, results).table
    overall = leaderboard_overall(table, pd.DataFrame(columns=["task_name", "n_choices"]))

    assert table["revision"].fillna("<none>").tolist() == ["<none>", "step1000", "main"]
    assert overall["revision"].fillna("<none>").tolist() == ["<none>", "step1000", "main"]
    assert overall["mean_win_rate"].tolist() == [1.0, 0.5, 0.0]


def test_overall_hand_computed(tiny) -> None:
    runs, results, choices = tiny
    table = leaderboard_tasks(runs, results).table

    overall = leaderboard_overall(table, choices)

    assert overall.columns.tolist() == OVERALL_COLUMNS
    # The declared set defaults to every task on the board: t1-t3. m3 never ran t3, so it is
    # incomplete and ranks after m2 and m1 whatever its scores.
    assert overall["model"].tolist() == ["m2", "m1", "m3"]
    assert overall["rank"].tolist() == [1, 2, 3]
    assert overall["complete"].tolist() == [True, True, False]
    assert overall["tasks_covered"].tolist() == [3, 3, 2]
    assert overall["tasks_declared"].tolist() == [3, 3, 3]
    # Each entry's mean is over its own tasks of the set.
    np.testing.assert_allclose(overall["mean_score"], [0.7, 1.4 / 3, 0.7])
    # Win rates against the complete entries (m1, m2) only: t1 m1 beats m2; t2 and t3 m2
    # beats m1. m3: t1 beats both (1), t2 beats m1 and ties m2 (3/4).
    np.testing.assert_allclose(overall["mean_win_rate"], [2 / 3, 1 / 3, 0.875])
    # t1 has 4 choices (chance 0.25), t2 none (generative, chance 0), t3 2 (chance 0.5).
    expected_norm = [
        ((0.6 - 0.25) / 0.75 + 0.6 + (0.9 - 0.5) / 0.5) / 3,
        ((0.7 - 0.25) / 0.75 + 0.4 + (0.3 - 0.5) / 0.5) / 3,
        ((0.8 - 0.25) / 0.75 + 0.6) / 2,
    ]
    np.testing.assert_allclose(overall["normalized_mean"], expected_norm)


def test_adding_a_partial_model_leaves_every_other_row_unchanged() -> None:
    rng = np.random.default_rng(7)
    tasks = [f"t{i}" for i in range(16)]
    models = [f"m{i}" for i in range(5)]
    rows = [(f"run-{m}", t, float(rng.integers(0, 100)) / 100, DAY1) for m in models for t in tasks]
    runs = _runs([(f"run-{m}", m, "main", "ok") for m in models])
    choices = pd.DataFrame({"task_name": tasks, "n_choices": rng.integers(0, 5, len(tasks))})
    before = leaderboard_overall(leaderboard_tasks(runs, _results(rows)).table, choices)

    # A new model evaluated on 6 of the 16 tasks, scoring above all on them.
    partial = [("run-new", t, 1.0, DAY2) for t in tasks[:6]]
    runs_after = pd.concat([runs, _runs([("run-new", "new", "main", "ok")])])
    table = leaderboard_tasks(runs_after, _results(rows + partial)).table
    after = leaderboard_overall(table, choices)

    assert after.iloc[: len(before)].equals(before)
    new = after.iloc[-1]
    assert (new["model"], new["complete"], new["tasks_covered"]) == ("new", False, 6)
    assert new["rank"] == len(models) + 1
    assert new["mean_win_rate"] == 1.0  # it beats every complete model on its tasks


def test_declared_task_set_from_suite_names_and_tasks() -> None:
    suites = {"suite": Suite("suite", ("t1", "t2"), "macro")}
    table = pd.DataFrame(
        {"task_name": ["t1", "t2", "t3"], "model": "m", "revision": "main", "primary_score": 0.5}
    )

    assert declared_tasks(table) == ["t1", "t2", "t3"]
    assert declared_tasks(table, ["suite", "t9"], suites) == ["t1", "t2", "t9"]

    overall = leaderboard_overall(
        table,
        pd.DataFrame(columns=["task_name", "n_choices"]),
        declared_tasks(table, ["suite"], suites),
    )
    assert overall[["complete", "tasks_covered", "tasks_declared"]].values.tolist() == [
        [True, 2, 2]
    ]
    overall = leaderboard_overall(table, pd.DataFrame(columns=["task_name", "n_choices"]), ["t9"])
    assert overall.empty  # nothing of the declared set was run


def test_incomplete_aggregate_ranks_after_complete_ones() -> None:
    suites = {"suite": Suite("suite", ("t1", "t2", "t3"), "macro")}
    runs = _runs([("full", "a", "main", "ok"), ("part", "b", "main", "ok")])
    results = _results(
        [
            ("full", "t1", 0.5, DAY1),
            ("full", "t2", 0.5, DAY1),
            ("full", "t3", 0.5, DAY1),
            ("full", "suite", 0.5, DAY1),
            ("part", "t1", 0.9, DAY1),
            ("part", "suite", 0.9, DAY1),  # averages 1 of 3 members
        ],
        aggregate={"suite"},
    )

    table = leaderboard_benchmarks(runs, results, suites).table

    assert table.columns.tolist() == BENCHMARK_COLUMNS
    got = table[["model", "rank", "members_present", "members_expected", "complete"]]
    assert got.values.tolist() == [["a", 1, 3, 3, True], ["b", 2, 1, 3, False]]


def test_run_standings_say_who_superseded_whom_and_why_a_run_ranks_nowhere(tiny) -> None:
    runs, results, choices = tiny
    runs = runs.assign(status_reason=[None, None, None, "aggregate differs", None, "bad rows"])
    late = _results([("r1c", "t1", 0.1, DAY3), ("r1c", "t2", 0.1, DAY3), ("r1c", "t3", 0.1, DAY3)])
    results = pd.concat([results, late], ignore_index=True)
    runs = pd.concat([runs, _runs([("r1c", "m1", "main", "ok")])], ignore_index=True)

    boards = build_leaderboards(runs, results, choices)

    standing = boards.runs.set_index("run_id")
    assert boards.runs.columns.tolist() == RUNS_COLUMNS
    assert standing.loc["r1c", "standing"] == "ranked"
    # r1 keeps only its aggregate; r1b lost its one task to r1c.
    assert standing.loc["r1", ["standing", "superseded_by"]].tolist() == [
        "partly superseded",
        "r1c",
    ]
    assert standing.loc["r1b", ["standing", "rows_ranked", "superseded_by"]].tolist() == [
        "superseded",
        0,
        "r1c",
    ]
    assert "newest wins" in standing.loc["r1b", "reason"]
    assert standing.loc["r2q", ["standing", "reason"]].tolist() == [
        "left out",
        "status quarantined: aggregate differs",
    ]
    assert set(boards.runs["standing"]) <= set(STANDINGS)
    assert boards.runs_counted == 5


def test_normalization_formula_and_chance_per_task() -> None:
    runs = _runs([("r1", "m1", "main", "ok"), ("r2", "m2", "main", "ok")])
    tasks = ["mc4", "mc2", "gen", "unknown", "single"]
    results = _results(
        [(r, t, s, DAY1) for r, s in (("r1", 0.5), ("r2", 1.0)) for t in tasks],
    )
    choices = pd.DataFrame(
        {
            "run_id": ["r1", "r2", "r1", "r1", "r1"],
            "task_name": ["mc4", "mc4", "mc2", "gen", "single"],
            # r2 saw 4 choices on mc4 where r1 saw 3: one chance per task, the max.
            "n_choices": [3, 4, 2, 0, 1],
        }
    )
    table = leaderboard_tasks(runs, results).table

    overall = leaderboard_overall(table, choices).set_index("model")

    # m1 scores 0.5 everywhere: mc4 (0.5-0.25)/0.75, mc2 0, gen/unknown/single 0.5 (chance 0).
    assert overall.loc["m1", "normalized_mean"] == pytest.approx((1 / 3 + 0 + 0.5 * 3) / 5)
    assert overall.loc["m2", "normalized_mean"] == pytest.approx(1.0)


def test_disjoint_entries_are_incomplete_with_own_means_and_no_win_rate() -> None:
    runs = _runs([("r1", "m1", "main", "ok"), ("r2", "m2", "main", "ok")])
    results = _results([("r1", "t1", 0.5, DAY1), ("r2", "t2", 0.6, DAY1)])
    table = leaderboard_tasks(runs, results).table

    overall = leaderboard_overall(table, pd.DataFrame(columns=["task_name", "n_choices"]))

    assert overall["model"].tolist() == ["m2", "m1"]
    assert overall["complete"].tolist() == [False, False]
    np.testing.assert_allclose(overall["mean_score"], [0.6, 0.5])
    assert overall["mean_win_rate"].isna().all()  # no opponent shares a task
    assert overall["tasks_covered"].tolist() == [1, 1]
    assert overall["rank"].tolist() == [1, 2]


def test_overall_rank_breaks_win_rate_ties_by_mean_score_and_shares_full_ties() -> None:
    # t1: a beats b and c, who tie; t2: b and c tie above a.  Win rates: a 1/2, b and c 1/2.
    runs = _runs([(r, r, "main", "ok") for r in ("a", "b", "c")])
    results = _results(
        [
            ("a", "t1", 0.9, DAY1),
            ("b", "t1", 0.5, DAY1),
            ("c", "t1", 0.5, DAY1),
            ("a", "t2", 0.1, DAY1),
            ("b", "t2", 0.3, DAY1),
            ("c", "t2", 0.3, DAY1),
        ]
    )
    table = leaderboard_tasks(runs, results).table

    overall = leaderboard_overall(table, pd.DataFrame(columns=["task_name", "n_choices"]))

    np.testing.assert_allclose(overall["mean_win_rate"], [0.5, 0.5, 0.5])
    assert overall[["model", "rank"]].values.tolist() == [["a", 1], ["b", 2], ["c", 2]]


def _brute_force_win_rates(
    table: pd.DataFrame, opponents: set[tuple[str, str]] | None = None
) -> dict[tuple[str, str], float]:
    scores = {
        (row.model, row.revision, row.task_name): row.primary_score
        for row in table.itertuples(index=False)
    }
    entries = sorted({(m, r) for m, r, _ in scores})
    tasks = sorted({t for _, _, t in scores})
    result = {}
    for entry in entries:
        rates = []
        for task in tasks:
            if (*entry, task) not in scores:
                continue
            mine = scores[(*entry, task)]
            others = [
                scores[(*o, task)]
                for o in entries
                if o != entry and (*o, task) in scores and (opponents is None or o in opponents)
            ]
            if others:
                wins = sum(1.0 if mine > s else 0.5 if mine == s else 0.0 for s in others)
                rates.append(wins / len(others))
        result[entry] = float(np.mean(rates)) if rates else float("nan")
    return result


def test_vectorised_win_rate_matches_brute_force() -> None:
    rng = np.random.default_rng(42)
    entries = [(f"m{i}", rev) for i in range(12) for rev in ("main", "step5")]
    rows = [
        {"model": m, "revision": r, "task_name": f"t{t}", "primary_score": rng.integers(0, 5) / 4}
        for (m, r), t in itertools.product(entries, range(9))
        if rng.random() < 0.7
    ]
    rows.append({"model": "loner", "revision": "main", "task_name": "solo", "primary_score": 1.0})
    table = pd.DataFrame(rows)

    overall = leaderboard_overall(table, pd.DataFrame(columns=["task_name", "n_choices"]))

    expected = _brute_force_win_rates(table)
    got = {(r.model, r.revision): r.mean_win_rate for r in overall.itertuples(index=False)}
    assert got.keys() == expected.keys()
    for entry, rate in expected.items():
        if np.isnan(rate):
            assert np.isnan(got[entry]), entry
        else:
            assert got[entry] == pytest.approx(rate), entry
    assert np.isnan(got[("loner", "main")])


def test_win_rate_against_complete_entries_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    complete = [(f"c{i}", "main") for i in range(5)]
    partial = [(f"p{i}", "main") for i in range(6)]
    rows = [
        {"model": m, "revision": r, "task_name": f"t{t}", "primary_score": rng.integers(0, 5) / 4}
        for (m, r), t in itertools.product(complete + partial, range(9))
        if (m, r) in complete or rng.random() < 0.6
    ]
    table = pd.DataFrame(rows)

    overall = leaderboard_overall(table, pd.DataFrame(columns=["task_name", "n_choices"]))

    expected = _brute_force_win_rates(table, set(complete))
    got = {(r.model, r.revision): r.mean_win_rate for r in overall.itertuples(index=False)}
    assert got == pytest.approx(expected)
    assert set(overall.loc[overall["complete"], "model"]) == {m for m, _ in complete}


def test_scale_smoke_120k_rows() -> None:
    n_runs, n_tasks, n_aggregates = 2000, 54, 6
    rng = np.random.default_rng(0)
    # 500 (model, revision) entries, each run 4 times; a sixth of runs quarantined.
    runs = pd.DataFrame(
        {
            "run_id": [f"run{i:04d}" for i in range(n_runs)],
            "model": [f"model{i % 250}" for i in range(n_runs)],
            "revision": [f"rev{(i // 250) % 2}" for i in range(n_runs)],
            "status": np.where(np.arange(n_runs) % 6 == 5, "quarantined", "ok"),
        }
    )
    task_names = [f"task{t:02d}" for t in range(n_tasks)] + [f"agg{a}" for a in range(n_aggregates)]
    n_rows = n_runs * len(task_names)
    results = pd.DataFrame(
        {
            "run_id": np.repeat(runs["run_id"].to_numpy(), len(task_names)),
            "task_name": np.tile(task_names, n_runs),
            "primary_score": rng.integers(0, 1000, n_rows) / 1000,
            "evaluated_at": DAY1
            + pd.to_timedelta(np.repeat(np.arange(n_runs), len(task_names)), "s"),
            "primary_metric": "acc",
            "num_instances": 500,
        }
    )
    results["is_aggregate"] = results["task_name"].str.startswith("agg")
    results["task_idx"] = pd.array(
        np.where(results["is_aggregate"], None, np.tile(np.arange(60), n_runs)), dtype="Int64"
    )
    choices = pd.DataFrame({"task_name": task_names, "n_choices": rng.integers(0, 5, 60)})

    tasks = leaderboard_tasks(runs, results)
    benchmarks = leaderboard_benchmarks(runs, results)
    overall = leaderboard_overall(tasks.table, choices)

    n_ok = int((runs["status"] == "ok").sum())
    assert len(tasks.table) == 500 * n_tasks
    assert tasks.superseded == (n_ok - 500) * n_tasks
    assert benchmarks.superseded == (n_ok - 500) * n_aggregates
    assert len(overall) == 500
    assert (overall["tasks_covered"] == n_tasks).all()
    # Each entry's surviving row is its newest healthy run (highest run index).
    newest = runs[runs["status"] == "ok"].groupby(["model", "revision"])["run_id"].max()
    got = tasks.table.groupby(["model", "revision"])["run_id"].agg(set)
    assert all(got.loc[k] == {v} for k, v in newest.items())
    best = tasks.table[tasks.table["rank"] == 1]
    top = tasks.table.groupby("task_name")["primary_score"].max()
    assert (best["primary_score"] == best["task_name"].map(top)).all()
    assert set(best["task_name"]) == set(top.index)
    assert overall["mean_win_rate"].between(0, 1).all()
