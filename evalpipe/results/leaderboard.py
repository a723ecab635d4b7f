"""Leaderboards over the warehouse tables: per task, per benchmark (aggregate), and overall.

A "model" on a leaderboard is a (model, revision) pair: two checkpoints of one model are
different entries. Only runs with status 'ok' count; quarantined runs never reach a board.
Higher primary_score is better everywhere.

Partial runs are common (a model evaluated on 6 of 16 tasks, an aggregate over some of its
members), so no entry's figures depend on which other entries exist: the overall board is taken
over a declared task set (`EVALPIPE_BOARD_TASKS`, default every task on the board), an entry
missing tasks of it is marked incomplete and ranked after the complete ones, and an aggregate
missing members of its suite is ranked after the complete aggregates of that benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evalpipe.results.suites import Suite

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
BENCHMARK_COLUMNS = [*TASK_COLUMNS, "members_present", "members_expected", "complete"]
OVERALL_COLUMNS = [
    "rank",
    "model",
    "revision",
    "complete",
    "tasks_covered",
    "tasks_declared",
    "mean_score",
    "mean_win_rate",
    "normalized_mean",
]
RUNS_COLUMNS = [
    "run_id",
    "model",
    "revision",
    "status",
    "standing",
    "rows_ranked",
    "rows_superseded",
    "superseded_by",
    "reason",
]
"""`leaderboard_runs`: where each run stands. `standing` is one of `STANDINGS`."""
STANDINGS = ("ranked", "partly superseded", "superseded", "left out", "no scores")
SUPERSEDED_COLUMNS = ["run_id", "task_name", "superseded_by"]


@dataclass(frozen=True, eq=False)
class LeaderboardResult:
    """A ranked table, how many older rows a newer re-run replaced, and which (`dropped`:
    run_id, task_name, superseded_by)."""

    table: pd.DataFrame
    superseded: int
    dropped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SUPERSEDED_COLUMNS))


def leaderboard_tasks(runs: pd.DataFrame, task_results: pd.DataFrame) -> LeaderboardResult:
    """Rank every (model, revision) on each non-aggregate task; see `_leaderboard`."""
    return _leaderboard(runs, task_results, aggregates=False)


def leaderboard_benchmarks(
    runs: pd.DataFrame, task_results: pd.DataFrame, suites: Mapping[str, Suite] | None = None
) -> LeaderboardResult:
    """Rank every (model, revision) on each benchmark, i.e. on the aggregate rows.

    An aggregate is ``complete`` when its run has a row for every member of its suite
    (`evalpipe.results.suites`); ``members_present`` / ``members_expected`` say how many. An
    incomplete aggregate averages fewer instances than the benchmark requires, so it is ranked
    after every complete one of that benchmark (ranks continue; ties share the best rank). An
    aggregate of an unknown suite has no declared members (``members_expected`` null) and
    counts as complete.
    """
    result = _leaderboard(runs, task_results, aggregates=True)
    table = _with_membership(result.table, task_results, suites or {})
    rank = _lexicographic_rank(
        table["complete"].astype(float), table["primary_score"], by=table["task_name"]
    )
    table = table.assign(rank=rank.where(table["primary_score"].notna()).astype("Int64"))
    table = table.sort_values(["task_name", "rank", *ENTRY], kind="stable", na_position="last")
    return LeaderboardResult(
        table=table[BENCHMARK_COLUMNS].reset_index(drop=True),
        superseded=result.superseded,
        dropped=result.dropped,
    )


def _with_membership(
    table: pd.DataFrame, task_results: pd.DataFrame, suites: Mapping[str, Suite]
) -> pd.DataFrame:
    """Add members_present / members_expected / complete to aggregate rows."""
    has = task_results.loc[~task_results["is_aggregate"].fillna(False).astype(bool)]
    tasks_of = has.groupby("run_id")["task_name"].agg(frozenset)
    present, expected = [], []
    for run_id, name in zip(table["run_id"], table["task_name"], strict=True):
        suite = suites.get(name)
        mine = tasks_of.get(run_id, frozenset())
        expected.append(None if suite is None else len(suite.members))
        present.append(None if suite is None else sum(m in mine for m in suite.members))
    table = table.assign(
        members_present=pd.array(present, dtype="Int64"),
        members_expected=pd.array(expected, dtype="Int64"),
    )
    complete = (table["members_present"] == table["members_expected"]).fillna(True)
    return table.assign(complete=complete.astype(bool))


def declared_tasks(
    tasks_table: pd.DataFrame, names: Iterable[str] = (), suites: Mapping[str, Suite] | None = None
) -> list[str]:
    """The overall board's task set: ``names`` (a suite name stands for all its members), or,
    when none are given, every task on the board. Sorted, without duplicates."""
    suites = suites or {}
    names = list(names)
    if not names:
        return sorted(tasks_table["task_name"].dropna().unique())
    chosen = {m for n in names for m in (suites[n].members if n in suites else (n,))}
    return sorted(chosen)


def leaderboard_overall(
    tasks_table: pd.DataFrame, task_choices: pd.DataFrame, declared: Iterable[str] | None = None
) -> pd.DataFrame:
    """One row per (model, revision) summarising `leaderboard_tasks(...).table` over the
    ``declared`` task set (default: every task on the board; see `declared_tasks`).

    Rows without a primary_score and tasks outside the set are ignored. Columns (in order):

    * ``rank``: complete entries first, then incomplete ones; within each, by mean_win_rate
      then mean_score, both descending (NaN last); ties share the best rank.
    * ``complete``: the entry has a score on every declared task.
    * ``tasks_covered`` / ``tasks_declared``: declared tasks it has a score on / in the set.
    * ``mean_score``: mean primary_score over the declared tasks the entry has, so it depends
      on the entry's own results only (for complete entries: over the whole set, the same
      tasks for all of them).
    * ``mean_win_rate``: HELM's mean win rate against the complete entries. On each task, the
      share of the *other* complete entries the entry beats, ties counting half; averaged over
      the entry's tasks that at least one such opponent has. Adding an incomplete entry
      therefore changes no other row. When no entry is complete, every entry is an opponent.
    * ``normalized_mean``: mean over the same tasks as mean_score of
      ``(score - chance) / (1 - chance)``, so 0 is random guessing and 1 perfect whatever the
      number of choices. ``chance`` is ``1 / n_choices`` for multiple-choice tasks
      (n_choices >= 2) and 0 otherwise (generative tasks: n_choices 0 or missing).
      ``n_choices`` is taken per task (the maximum over runs) so every entry is normalised
      against the same baseline.
    """
    task_set = declared_tasks(tasks_table, declared or ())
    scored = tasks_table.dropna(subset=["primary_score"])
    scored = scored[scored["task_name"].isin(task_set)].reset_index(drop=True)
    chance = _chance(scored["task_name"], task_choices)
    scored = scored.assign(normalized=(scored["primary_score"] - chance) / (1 - chance))
    entries = scored.groupby(ENTRY, dropna=False, sort=False)
    summary = pd.DataFrame({"tasks_covered": entries["task_name"].nunique()})
    summary["tasks_declared"] = len(task_set)
    summary["complete"] = summary["tasks_covered"] == len(task_set)
    summary["mean_score"] = entries["primary_score"].mean()
    summary["normalized_mean"] = entries["normalized"].mean()

    complete = scored.join(summary["complete"], on=ENTRY)["complete"].to_numpy(dtype=bool)
    opponents = complete if complete.any() else np.ones(len(scored), dtype=bool)
    wins = _win_rates(scored, opponents).groupby(
        [scored[c] for c in ENTRY], dropna=False, sort=False
    )
    summary["mean_win_rate"] = wins.mean()
    summary = summary.reset_index()
    summary["rank"] = _lexicographic_rank(
        summary["complete"].astype(float), summary["mean_win_rate"], summary["mean_score"]
    )
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
    winners = latest.set_index(keys)["run_id"].rename("superseded_by")
    dropped = rows.drop(index=latest.index).join(winners, on=keys)[SUPERSEDED_COLUMNS]
    return LeaderboardResult(
        table=table.reset_index(drop=True),
        superseded=len(rows) - len(latest),
        dropped=dropped.reset_index(drop=True),
    )


def _chance(task_names: pd.Series, task_choices: pd.DataFrame) -> pd.Series:
    """Random-guess score per row: 1 / n_choices for multiple choice, else 0."""
    n_choices = task_choices.groupby("task_name")["n_choices"].max()
    n = task_names.map(n_choices).astype(float)
    return (1 / n).where(n >= 2, 0.0)


def _win_rates(scored: pd.DataFrame, opponents: np.ndarray) -> pd.Series:
    """Per row: share of the opponent rows on its task (other than itself) it beats, ties
    counting half; NaN where the task has no other opponent, which the mean then skips."""
    rates = pd.Series(np.nan, index=scored.index)
    scores = scored["primary_score"].to_numpy(dtype=float)
    for rows in scored.groupby("task_name").indices.values():
        against = np.sort(scores[rows][opponents[rows]])
        below = np.searchsorted(against, scores[rows], side="left")
        equal = np.searchsorted(against, scores[rows], side="right") - below
        itself = opponents[rows].astype(int)  # an opponent ties with itself: not a game
        others = len(against) - itself
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = (below + (equal - itself) / 2) / others
        rates.iloc[rows] = np.where(others > 0, rate, np.nan)
    return rates


def _lexicographic_rank(*keys: pd.Series, by: pd.Series | None = None) -> pd.Series:
    """Rank (1 = best) by the keys in order, all descending, NaN last, ties "min"; within
    each group of ``by`` when given."""
    frame = pd.DataFrame({i: k for i, k in enumerate(keys)}).astype(float).fillna(-np.inf)
    combined = pd.Series(0.0, index=frame.index)
    for column in frame.columns:
        dense = frame[column].rank(method="dense", ascending=False)
        combined = combined * (len(frame) + 1) + dense
    ranked = combined.rank(method="min") if by is None else combined.groupby(by).rank("min")
    return ranked.astype("Int64")


@dataclass(frozen=True, eq=False)
class Leaderboards:
    """The boards built together from one read of the lake, plus where each run stands."""

    tasks: LeaderboardResult
    benchmarks: LeaderboardResult
    overall: pd.DataFrame
    runs: pd.DataFrame

    @property
    def runs_counted(self) -> int:
        return int((self.runs["status"] == "ok").sum())

    @property
    def runs_excluded(self) -> pd.DataFrame:
        return self.runs.loc[self.runs["standing"] == "left out"]

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "leaderboard_tasks": self.tasks.table,
            "leaderboard_benchmarks": self.benchmarks.table,
            "leaderboard_overall": self.overall,
            "leaderboard_runs": self.runs,
        }


def build_leaderboards(
    runs: pd.DataFrame,
    task_results: pd.DataFrame,
    task_choices: pd.DataFrame,
    *,
    suites: Mapping[str, Suite] | None = None,
    board_tasks: Iterable[str] = (),
) -> Leaderboards:
    """All boards; `runs` carries `status` (and `status_reason`), only 'ok' runs are counted.
    ``board_tasks`` declares the overall board's task set (see `declared_tasks`)."""
    tasks = leaderboard_tasks(runs, task_results)
    benchmarks = leaderboard_benchmarks(runs, task_results, suites)
    declared = declared_tasks(tasks.table, board_tasks, suites)
    return Leaderboards(
        tasks=tasks,
        benchmarks=benchmarks,
        overall=leaderboard_overall(tasks.table, task_choices, declared),
        runs=run_standings(runs, [tasks, benchmarks]),
    )


def run_standings(runs: pd.DataFrame, boards: Iterable[LeaderboardResult]) -> pd.DataFrame:
    """One row per run (`RUNS_COLUMNS`): how many of its rows are ranked, how many a newer
    run of the same (model, revision) superseded (the newest ``evaluated_at`` wins) and by
    which runs, and, for a run that ranks nowhere, why."""
    boards = list(boards)
    ranked = pd.concat([b.table["run_id"] for b in boards]).value_counts()
    dropped = pd.concat([b.dropped for b in boards])
    by_run = dropped.groupby("run_id")
    winners = by_run["superseded_by"].agg(lambda s: ", ".join(sorted(set(s))))
    out = runs.reindex(columns=["run_id", *ENTRY, "status", "status_reason"]).copy()
    out["rows_ranked"] = out["run_id"].map(ranked).fillna(0).astype("int64")
    out["rows_superseded"] = out["run_id"].map(by_run.size()).fillna(0).astype("int64")
    out["superseded_by"] = out["run_id"].map(winners)
    standing, reason = [], []
    for row in out.itertuples(index=False):
        if row.status != "ok":
            standing.append("left out")
            reason.append(
                f"status {row.status}"
                + (f": {row.status_reason}" if _given(row.status_reason) else "")
            )
        elif row.rows_ranked and row.rows_superseded:
            standing.append("partly superseded")
            reason.append(f"{row.rows_superseded} task rows replaced by newer runs of the model")
        elif row.rows_ranked:
            standing.append("ranked")
            reason.append(None)
        elif row.rows_superseded:
            standing.append("superseded")
            reason.append(
                f"every task has a newer evaluated_at in {row.superseded_by} (newest wins)"
            )
        else:
            standing.append("no scores")
            reason.append("the run has no task results")
    out = out.assign(standing=standing, reason=reason)
    return out[RUNS_COLUMNS].sort_values("run_id", kind="stable").reset_index(drop=True)


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))
