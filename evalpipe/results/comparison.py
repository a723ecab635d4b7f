"""Shaping warehouse rows into the answers of `evalpipe compare`, `significance` and friends.

Pure functions over plain rows and DataFrames (no Dagster, no warehouse access), so the CLI
stays a thin layer of SQL and every rule here is tested on small hand-made inputs.
"""

from __future__ import annotations

import difflib
import json
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import pandas as pd

from evalpipe.results.stats import Paired, mcnemar_exact, pair_instances, paired_bootstrap
from evalpipe.results.suites import Suite

# Two scores closer than this are a tie: they come from the same float arithmetic on the same
# instances, so anything smaller is rounding noise, not a better model.
_TIE_TOLERANCE = 1e-12


class Table(NamedTuple):
    """Column names and rows, ready for `evalpipe.core.output.render`."""

    columns: list[str]
    rows: list[tuple]


def glob_to_like(pattern: str) -> str:
    """A shell-style pattern (`*`, `?`) as a SQL LIKE pattern with `\\` as escape character.

    LIKE's own wildcards are escaped because `_` is everywhere in task names (`arc_easy`); a
    pattern without wildcards matches anywhere in the value, which is what a person typing
    `--model olmo` means.
    """
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = escaped.replace("*", "%").replace("?", "_")
    return like if any(c in pattern for c in "*?") else f"%{like}%"


def suggest(name: str, known: Sequence[str], limit: int = 3) -> list[str]:
    """Known names close to a mistyped one: those containing it first, then fuzzy matches."""
    containing = [k for k in known if name.lower() in k.lower()]
    fuzzy = difflib.get_close_matches(name, known, n=limit, cutoff=0.6)
    return list(dict.fromkeys([*containing, *fuzzy]))[:limit]


def unknown_name_message(kind: str, name: str, known: Sequence[str], hint: str) -> str:
    """`no run 'x'; see `evalpipe runs`` plus the closest known names, if any."""
    close = suggest(name, known)
    return f"no {kind} {name!r}; {hint}" + (
        f" (did you mean: {', '.join(close)}?)" if close else ""
    )


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (`metadata.alias`), so a diff names the leaf
    that changed rather than a whole sub-object. Lists and empty mappings stay leaves."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def parse_config(text: Any) -> dict[str, Any]:
    """A JSON-text config column as a dict; NULL (None or NaN in a frame) or a non-object
    counts as empty."""
    value = json.loads(text) if isinstance(text, str) and text else {}
    return value if isinstance(value, dict) else {}


def config_differences(configs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str | None]]]:
    """Dotted keys whose value is not the same in every config, in first-seen key order.

    Each value is compact JSON text (so `null`, `"1"` and `1` stay distinct) or None where a
    config lacks the key altogether.
    """
    flats = [flatten(c) for c in configs]
    keys = dict.fromkeys(k for flat in flats for k in flat)
    missing = object()
    diffs = []
    for key in keys:
        values = [flat.get(key, missing) for flat in flats]
        if any(v != values[0] for v in values[1:]):
            diffs.append((key, [None if v is missing else _json_text(v) for v in values]))
    return diffs


def run_labels(run_ids: Sequence[str]) -> dict[str, str]:
    """Short column labels A, B, ..., Z, AA, AB, ... in argument order: run ids are too long
    to head a column."""
    labels = {}
    for i, run_id in enumerate(run_ids):
        label, n = "", i + 1
        while n:
            n, rest = divmod(n - 1, 26)
            label = string.ascii_uppercase[rest] + label
        labels[run_id] = label
    return labels


@dataclass(frozen=True)
class Comparison:
    """Everything `evalpipe compare` prints; the winner row names no run on a tie or when the
    runs share no scored task."""

    runs: Table
    config_differences: Table
    scores: Table
    winner: Table


def build_comparison(runs: pd.DataFrame, task_rows: pd.DataFrame) -> Comparison:
    """Compare runs (in the order of `runs`) task by task.

    `runs` has run_id, model, revision, status; `task_rows` has run_id, task_name,
    is_aggregate, primary_metric, primary_score, model_config, task_config. Deltas are against
    the first run. The winner has the highest mean primary score over the *common* tasks (the
    non-aggregate tasks every run has a score on), so runs are judged on the same tasks and
    aggregates do not count their members twice; a task is won by the single best run (ties
    win nobody).
    """
    run_ids = list(runs["run_id"])
    labels = run_labels(run_ids)
    scores = (
        task_rows.drop_duplicates(["task_name", "run_id"])
        .pivot(index="task_name", columns="run_id", values="primary_score")
        .reindex(columns=run_ids)
    )
    common = _common_tasks(task_rows, scores, run_ids)
    means = scores.loc[common].mean() if common else pd.Series(float("nan"), index=run_ids)
    wins, ties = _task_wins(scores.loc[common], run_ids)
    return Comparison(
        runs=_runs_table(runs, labels, means, wins),
        config_differences=_config_table(task_rows, run_ids, labels),
        scores=_scores_table(task_rows, scores, run_ids, labels),
        winner=_winner_table(runs, means, wins, len(common), ties, labels),
    )


def _runs_table(
    runs: pd.DataFrame, labels: dict[str, str], means: pd.Series, wins: dict[str, int]
) -> Table:
    """The legend: which run each label stands for, with its mean and wins."""
    return Table(
        ["label", "run_id", "model", "revision", "status", "mean_score", "task_wins"],
        [
            (labels[r], r, m, rev, st, _float(means[r]), wins[r])
            for r, m, rev, st in runs[["run_id", "model", "revision", "status"]].itertuples(
                index=False
            )
        ],
    )


def _common_tasks(task_rows: pd.DataFrame, scores: pd.DataFrame, run_ids: list[str]) -> list[str]:
    aggregates = set(task_rows.loc[task_rows["is_aggregate"].map(_truthy), "task_name"])
    complete = scores[run_ids].notna().all(axis=1)
    return [t for t in scores.index[complete] if t not in aggregates]


def _task_wins(common: pd.DataFrame, run_ids: list[str]) -> tuple[dict[str, int], int]:
    """Tasks won outright per run, and the number of tasks where the best score is shared."""
    wins = dict.fromkeys(run_ids, 0)
    ties = 0
    for _, row in common.iterrows():
        best = [r for r in run_ids if row[r] >= row.max() - _TIE_TOLERANCE]
        if len(best) == 1:
            wins[best[0]] += 1
        else:
            ties += 1
    return wins, ties


def _config_table(task_rows: pd.DataFrame, run_ids: list[str], labels: dict[str, str]) -> Table:
    """model_config keys that differ, then task_config keys per task every run has."""
    by_run = {r: g.sort_values("task_name") for r, g in task_rows.groupby("run_id")}
    model_configs = [_first_config(by_run.get(r), "model_config") for r in run_ids]
    rows = [("model_config", None, key, *vals) for key, vals in config_differences(model_configs)]
    shared = set.intersection(
        *(set(by_run[r]["task_name"]) if r in by_run else set() for r in run_ids)
    )
    for task in sorted(shared):
        configs = [
            parse_config(by_run[r].loc[by_run[r]["task_name"] == task, "task_config"].iloc[0])
            for r in run_ids
        ]
        rows += [("task_config", task, key, *vals) for key, vals in config_differences(configs)]
    return Table(["section", "task_name", "key", *labels.values()], rows)


def _first_config(rows: pd.DataFrame | None, column: str) -> dict[str, Any]:
    """A run's model_config: the same on every task row, so the first non-null one."""
    if rows is None:
        return {}
    present = rows[column].dropna()
    return parse_config(present.iloc[0]) if len(present) else {}


def _scores_table(
    task_rows: pd.DataFrame, scores: pd.DataFrame, run_ids: list[str], labels: dict[str, str]
) -> Table:
    """task_name × run primary scores, each later run followed by its delta to the first."""
    first = run_ids[0]
    flagged = task_rows.assign(is_aggregate=task_rows["is_aggregate"].map(_truthy))
    meta = flagged.groupby("task_name").agg(
        is_aggregate=("is_aggregate", "max"),
        primary_metric=("primary_metric", lambda s: " / ".join(sorted(set(s.dropna())))),
    )
    columns = ["task_name", "is_aggregate", "primary_metric", labels[first]]
    for run_id in run_ids[1:]:
        columns += [labels[run_id], f"{labels[run_id]}-{labels[first]}"]
    rows = []
    for task in sorted(scores.index, key=lambda t: (meta.at[t, "is_aggregate"], t)):
        cells: list[Any] = [_float(scores.at[task, first])]
        for run_id in run_ids[1:]:
            score = _float(scores.at[task, run_id])
            base = cells[0]
            cells += [score, None if score is None or base is None else score - base]
        metric = meta.at[task, "primary_metric"] or None
        rows.append((task, bool(meta.at[task, "is_aggregate"]), metric, *cells))
    return Table(columns, rows)


def _winner_table(
    runs: pd.DataFrame,
    means: pd.Series,
    wins: dict[str, int],
    n_common: int,
    ties: int,
    labels: dict[str, str],
) -> Table:
    columns = ["label", "run_id", "model", "mean_score", "common_tasks", "task_wins", "tied_tasks"]
    scored = means.dropna()
    leaders = [] if scored.empty else list(scored.index[scored >= scored.max() - _TIE_TOLERANCE])
    if len(leaders) != 1:
        return Table(columns, [(None, None, None, _float(scored.max()), n_common, None, ties)])
    run_id = leaders[0]
    model = runs.loc[runs["run_id"] == run_id, "model"].iloc[0]
    return Table(
        columns,
        [(labels[run_id], run_id, model, float(scored[run_id]), n_common, wins[run_id], ties)],
    )


@dataclass(frozen=True)
class SignificancePlan:
    """Which task rows hold the instances behind `task`, and how to combine them."""

    task: str
    tasks: tuple[str, ...]
    stratified: bool
    metric: str


def significance_plan(
    task: str, rows: pd.DataFrame, run_a: str, run_b: str, suites: Mapping[str, Suite]
) -> SignificancePlan:
    """Resolve `task` from both runs' task_results rows (run_id, task_name, is_aggregate,
    primary_metric).

    A plain task is its own instances. An aggregate is its suite's members (doc_ids restart per
    member, so members are strata): a macro suite is resampled per member and macro-averaged,
    a micro suite is pooled, matching how each aggregate is scored. Runs must agree on the
    primary metric of every task they share, or the instance values are not comparable.
    """
    rows_a, rows_b = (rows[rows["run_id"] == r].set_index("task_name") for r in (run_a, run_b))
    for run_id, run_rows in ((run_a, rows_a), (run_b, rows_b)):
        if task not in run_rows.index:
            hint = f"see `evalpipe show {run_id}`"
            raise ValueError(unknown_name_message("task", task, list(run_rows.index), hint))
    if not _truthy(rows_a.at[task, "is_aggregate"]):
        return SignificancePlan(task, (task,), False, _shared_metric(task, rows_a, rows_b))
    suite = suites.get(task)
    if suite is None:
        raise ValueError(
            f"aggregate {task!r} is not a known suite, so its member tasks are unknown; "
            "define it in EVALPIPE_SUITES_FILE"
        )
    shared = rows_a.index.intersection(rows_b.index)
    metrics = {m: _shared_metric(m, rows_a, rows_b) for m in suite.members if m in shared}
    if not metrics:
        raise ValueError(f"aggregate {task!r}: no member task is present in both runs")
    return SignificancePlan(
        task,
        suite.members,
        stratified=suite.averaging == "macro",
        metric=f"{suite.averaging}({', '.join(sorted(set(metrics.values())))})",
    )


def _shared_metric(task: str, rows_a: pd.DataFrame, rows_b: pd.DataFrame) -> str:
    a, b = (_text(rows.at[task, "primary_metric"]) for rows in (rows_a, rows_b))
    if a is None or b is None:
        side = "RUN_A" if a is None else "RUN_B"
        raise ValueError(f"task {task!r} has no primary metric in {side}")
    if a != b:
        raise ValueError(
            f"task {task!r}: the runs' primary metrics differ ({a!r} vs {b!r}); "
            "their instance values are not comparable"
        )
    return a


@dataclass(frozen=True, eq=False)
class PairedValues:
    """Instances paired on (task_name, doc_id), with the unpairable ones counted, not dropped."""

    paired: Paired
    unscored_a: int
    unscored_b: int


def instance_values(predictions: pd.DataFrame, task_rows: pd.DataFrame) -> pd.DataFrame:
    """Each prediction's value of its own task's primary metric, read from its metrics JSON.

    `predictions` has run_id, task_name, doc_id, metrics; `task_rows` has run_id, task_name,
    primary_metric. The value is NaN where the metric is absent or not a number.
    """
    metrics = task_rows[["run_id", "task_name", "primary_metric"]]
    rows = predictions.merge(metrics, on=["run_id", "task_name"], how="left")
    values = [
        _metric_value(text, name)
        for text, name in zip(rows["metrics"], rows["primary_metric"], strict=True)
    ]
    return rows[["run_id", "task_name", "doc_id"]].assign(value=pd.Series(values, dtype=float))


def pair_values(values: pd.DataFrame, run_a: str, run_b: str) -> PairedValues:
    """Pair two runs' instance values (run_id, task_name, doc_id, value) on task_name and
    doc_id.

    An instance without a value for its primary metric cannot be paired: it is counted as
    unscored instead of entering the test as NaN or vanishing.
    """
    a, b = (values[values["run_id"] == r] for r in (run_a, run_b))
    paired = pair_instances(
        a.dropna(subset=["value"]), b.dropna(subset=["value"]), stratum="task_name"
    )
    return PairedValues(
        paired=paired,
        unscored_a=int(a["value"].isna().sum()),
        unscored_b=int(b["value"].isna().sum()),
    )


def _metric_value(text: Any, name: Any) -> float | None:
    """A number from a metrics JSON object (booleans count as 0/1); None for anything else."""
    if not isinstance(text, str) or not isinstance(name, str):
        return None
    value = orjson.loads(text)
    number = value.get(name) if isinstance(value, dict) else None
    if isinstance(number, (int, float)) and not (isinstance(number, float) and math.isnan(number)):
        return float(number)
    return None


SIGNIFICANCE_COLUMNS = [
    "run_a", "run_b", "task", "metric", "method", "n_paired", "only_in_a", "only_in_b",
    "unscored_a", "unscored_b", "strata", "mean_a", "mean_b", "diff", "ci_low", "ci_high",
    "confidence", "p_value", "n01", "n10", "iterations", "seed",
]  # fmt: skip


def significance(
    run_a: str,
    run_b: str,
    plan: SignificancePlan,
    values: PairedValues,
    *,
    method: str,
    iterations: int,
    seed: int,
) -> tuple:
    """The row of `evalpipe significance`: diff = mean_b - mean_a with its paired-bootstrap
    interval; the p-value from the bootstrap, or from McNemar's exact test on 0/1 values.

    McNemar tests the pooled share of instances right, so it is refused for a macro-averaged
    aggregate, whose score weights members equally whatever their size.
    """
    paired = values.paired
    if paired.n == 0:
        raise ValueError(
            f"task {plan.task!r}: no instance is scored in both runs "
            f"({paired.only_left} only in RUN_A, {paired.only_right} only in RUN_B)"
        )
    if method == "mcnemar" and plan.stratified:
        raise ValueError(
            f"{plan.task!r} is a macro average of its members; McNemar tests a pooled 0/1 "
            "score, use --method bootstrap"
        )
    if method == "mcnemar" and not (_is_binary(paired.a) and _is_binary(paired.b)):
        raise ValueError(
            f"--method mcnemar needs 0/1 instance values; {plan.metric} of {plan.task!r} "
            "has others (use --method bootstrap)"
        )
    strata = paired.strata if plan.stratified else None
    boot = paired_bootstrap(paired.a, paired.b, iterations=iterations, seed=seed, strata=strata)
    n01 = n10 = None
    p_value = boot.p_value
    if method == "mcnemar":
        test = mcnemar_exact(paired.a, paired.b)
        n01, n10, p_value = test.n01, test.n10, test.p_value
    return (
        run_a, run_b, plan.task, plan.metric, method, paired.n, paired.only_left,
        paired.only_right, values.unscored_a, values.unscored_b, boot.n_strata, boot.mean_a,
        boot.mean_b, boot.diff, boot.ci_low, boot.ci_high, boot.confidence, p_value, n01, n10,
        iterations, seed,
    )  # fmt: skip


def _truthy(value: Any) -> bool:
    return not pd.isna(value) and bool(value)


def _text(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _is_binary(values: Any) -> bool:
    return bool(pd.Series(values).isin((0.0, 1.0)).all())


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
