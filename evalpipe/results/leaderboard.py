"""Leaderboards over the warehouse tables: per task, per benchmark (aggregate), and overall.

A "model" on a leaderboard is a (model, revision) pair: two checkpoints of one model are
different entries. Only runs with status 'ok' count; quarantined runs never reach a board.
Higher primary_score is better everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ENTRY = ["model", "revision"]
TASK_COLUMNS = [
    "task_name",
    "rank",
    "model",
    "revision",
    "primary_metric",
    "primary_score",
    "num_instances",
    "run_id",
    "evaluated_at",
]
OVERALL_COLUMNS = [
    "rank",
    "model",
    "revision",
    "tasks_covered",
    "mean_score",
    "mean_win_rate",
    "normalized_mean",
]


@dataclass(frozen=True, eq=False)
class LeaderboardResult:
    """A ranked table plus how many older rows were dropped in favour of a newer re-run."""

    table: pd.DataFrame
    superseded: int


def leaderboard_tasks(runs: pd.DataFrame, task_results: pd.DataFrame) -> LeaderboardResult:
    """Rank every (model, revision) on each non-aggregate task; see `_leaderboard`."""
    return _leaderboard(runs, task_results, aggregates=False)


def leaderboard_benchmarks(runs: pd.DataFrame, task_results: pd.DataFrame) -> LeaderboardResult:
    """Rank every (model, revision) on each benchmark, i.e. on the aggregate rows."""
    return _leaderboard(runs, task_results, aggregates=True)


def leaderboard_overall(tasks_table: pd.DataFrame, task_choices: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, revision) summarising `leaderboard_tasks(...).table`.

    Rows without a primary_score are ignored. Columns (in order):

    * ``rank``: by mean_win_rate, then mean_score, both descending (NaN last); ties share the
      best rank.
    * ``tasks_covered``: tasks the entry has a score on.
    * ``mean_score``: mean primary_score over the *common* tasks, those every entry has, so
      entries are compared on the same tasks (NaN when no task is common to all).
    * ``mean_win_rate``: HELM's mean win rate. On each task, the share of the *other* entries
      the entry beats, ties counting half; averaged over the entry's tasks that at least one
      other entry also has. Robust to tasks having different score scales and to partial
      coverage, unlike a mean score.
    * ``normalized_mean``: mean over the common tasks of ``(score - chance) / (1 - chance)``,
      so 0 is random guessing and 1 perfect whatever the number of choices. ``chance`` is
      ``1 / n_choices`` for multiple-choice tasks (n_choices >= 2) and 0 otherwise (generative
      tasks: n_choices 0 or missing). ``n_choices`` is taken per task (the maximum over runs)
      so every entry is normalised against the same baseline.
    """
    scored = tasks_table.dropna(subset=["primary_score"])
    entries = scored.groupby(ENTRY, dropna=False, sort=False)
    summary = pd.DataFrame({"tasks_covered": entries["task_name"].nunique()})

    common = _common_task_rows(scored)
    chance = _chance(common["task_name"], task_choices)
    common = common.assign(normalized=(common["primary_score"] - chance) / (1 - chance))
    common_entries = common.groupby(ENTRY, dropna=False, sort=False)
    summary["mean_score"] = common_entries["primary_score"].mean()
    summary["normalized_mean"] = common_entries["normalized"].mean()

    wins = _win_rates(scored).groupby([scored[c] for c in ENTRY], dropna=False, sort=False)
    summary["mean_win_rate"] = wins.mean()
    summary = summary.reset_index()
    summary["rank"] = _lexicographic_rank(summary["mean_win_rate"], summary["mean_score"])
    return (
        summary[OVERALL_COLUMNS].sort_values(["rank", *ENTRY], kind="stable").reset_index(drop=True)
    )


def _leaderboard(
    runs: pd.DataFrame, task_results: pd.DataFrame, *, aggregates: bool
) -> LeaderboardResult:
    """Latest result per (model, revision, task_name) from healthy runs, ranked within the task.

    A re-run supersedes older results: the newest ``evaluated_at`` wins, then the greatest
    ``run_id`` so the choice is deterministic. Ranks use method "min" (ties share the best
    rank); a missing score keeps its row with a null rank.
    """
    healthy = runs.loc[runs["status"] == "ok", ["run_id", *ENTRY]]
    is_aggregate = task_results["is_aggregate"].fillna(False).astype(bool)
    rows = task_results[is_aggregate == aggregates].merge(healthy, on="run_id", how="inner")

    keys = [*ENTRY, "task_name"]
    latest = rows.sort_values(
        [*keys, "evaluated_at", "run_id"],
        ascending=[True, True, True, False, False],
        kind="stable",
    ).drop_duplicates(keys, keep="first")

    rank = latest.groupby("task_name")["primary_score"].rank(method="min", ascending=False)
    table = latest.assign(rank=rank.astype("Int64"))[TASK_COLUMNS]
    table = table.sort_values(["task_name", "rank", *ENTRY], kind="stable")
    return LeaderboardResult(table=table.reset_index(drop=True), superseded=len(rows) - len(latest))


def _common_task_rows(scored: pd.DataFrame) -> pd.DataFrame:
    """Rows of the tasks that every entry has a score on."""
    n_entries = len(scored[ENTRY].drop_duplicates())
    per_task = scored.groupby("task_name")["task_name"].transform("size")
    return scored[per_task == n_entries]


def _chance(task_names: pd.Series, task_choices: pd.DataFrame) -> pd.Series:
    """Random-guess score per row: 1 / n_choices for multiple choice, else 0."""
    n_choices = task_choices.groupby("task_name")["n_choices"].max()
    n = task_names.map(n_choices).astype(float)
    return (1 / n).where(n >= 2, 0.0)


def _win_rates(scored: pd.DataFrame) -> pd.Series:
    """Per row: share of the other entries on that task this one beats, ties counting half.

    With ascending average ranks on a task of m entries, an entry with L entries below it and
    T entries tied with it (itself included) gets rank L + (T + 1) / 2, while its wins are
    L + (T - 1) / 2 = rank - 1. Dividing by the m - 1 others gives the win rate; tasks with a
    single entry have no opponent and yield NaN, which the mean then skips.
    """
    by_task = scored.groupby("task_name")["primary_score"]
    others = by_task.transform("size") - 1
    return (by_task.rank(method="average") - 1) / others.where(others > 0)


def _lexicographic_rank(first: pd.Series, second: pd.Series) -> pd.Series:
    """Rank (1 = best) by ``first`` then ``second``, both descending, NaN last, ties "min"."""
    keys = pd.DataFrame({"first": first, "second": second}).fillna(-np.inf)
    dense = [keys[c].rank(method="dense", ascending=False) for c in keys.columns]
    combined = dense[0] * (len(keys) + 1) + dense[1]
    return combined.rank(method="min").astype("Int64")


@dataclass(frozen=True, eq=False)
class Leaderboards:
    """The three boards built together from one read of the lake, plus what was left out."""

    tasks: LeaderboardResult
    benchmarks: LeaderboardResult
    overall: pd.DataFrame
    runs_counted: int
    runs_excluded: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "leaderboard_tasks": self.tasks.table,
            "leaderboard_benchmarks": self.benchmarks.table,
            "leaderboard_overall": self.overall,
        }


def build_leaderboards(
    runs: pd.DataFrame, task_results: pd.DataFrame, task_choices: pd.DataFrame
) -> Leaderboards:
    """All three boards; `runs` carries `status`, and only 'ok' runs are counted."""
    tasks = leaderboard_tasks(runs, task_results)
    benchmarks = leaderboard_benchmarks(runs, task_results)
    counted = runs["status"] == "ok"
    return Leaderboards(
        tasks=tasks,
        benchmarks=benchmarks,
        overall=leaderboard_overall(tasks.table, task_choices),
        runs_counted=int(counted.sum()),
        runs_excluded=runs.loc[~counted, ["run_id", "model", "status", "status_reason"]],
    )
