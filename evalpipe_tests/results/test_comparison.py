"""The pure rules behind compare and significance, on small hand-made rows."""

import json

import numpy as np
import pandas as pd
import pytest

from evalpipe.results.comparison import (
    SIGNIFICANCE_COLUMNS,
    build_comparison,
    config_differences,
    flatten,
    glob_to_like,
    instance_values,
    pair_values,
    run_labels,
    significance,
    significance_plan,
    suggest,
)
from evalpipe.results.suites import Suite


@pytest.mark.parametrize(
    ("pattern", "like"),
    [
        ("olmo", "%olmo%"),
        ("allenai/*", "allenai/%"),
        ("arc_?asy*", "arc\\__asy%"),
        ("100%", "%100\\%%"),
        ("a\\b", "%a\\\\b%"),
    ],
)
def test_glob_to_like_escapes_like_wildcards(pattern: str, like: str) -> None:
    assert glob_to_like(pattern) == like


def test_suggest_prefers_names_containing_the_typo() -> None:
    known = ["dump/a/Qwen__main", "dump/b/Qwen__main", "dump/a/llama__main"]
    assert suggest("Qwen__main", known) == ["dump/a/Qwen__main", "dump/b/Qwen__main"]
    assert suggest("dump/a/lama__main", known)[0] == "dump/a/llama__main"
    assert suggest("zzz", known) == []


def test_flatten_uses_dotted_keys_and_keeps_lists_and_empty_objects() -> None:
    config = {"a": 1, "m": {"alias": "x", "deep": {"k": None}}, "l": [1, {"b": 2}], "e": {}}
    assert flatten(config) == {
        "a": 1,
        "m.alias": "x",
        "m.deep.k": None,
        "l": [1, {"b": 2}],
        "e": {},
    }


def test_config_differences_name_the_changed_leaves() -> None:
    a = {"model": "x", "max_length": 4096, "metadata": {"alias": "x", "tag": None}, "same": [1]}
    b = {"model": "y", "max_length": 4096, "metadata": {"alias": "y"}, "same": [1], "new": "1"}
    c = {"model": "y", "max_length": 4096, "metadata": {"alias": "y", "tag": None}, "same": [1]}
    assert config_differences([a, b, c]) == [
        ("model", ['"x"', '"y"', '"y"']),
        ("metadata.alias", ['"x"', '"y"', '"y"']),
        ("metadata.tag", ["null", None, "null"]),
        ("new", [None, '"1"', None]),
    ]
    assert config_differences([a, dict(a)]) == []


def test_config_differences_keep_types_apart() -> None:
    assert config_differences([{"n": 1}, {"n": "1"}]) == [("n", ["1", '"1"'])]


def test_run_labels_go_on_past_z() -> None:
    labels = list(run_labels([f"r{i}" for i in range(28)]).values())
    assert labels[:3] == ["A", "B", "C"] and labels[25:] == ["Z", "AA", "AB"]


def task_row(run_id: str, task: str, score: float | None, **extra) -> dict:
    return {
        "run_id": run_id,
        "task_name": task,
        "is_aggregate": extra.get("is_aggregate", False),
        "primary_metric": extra.get("metric", "acc"),
        "primary_score": score,
        "model_config": json.dumps(extra.get("model_config", {"model": run_id})),
        "task_config": json.dumps(extra.get("task_config", {"num_shots": 5})),
    }


def runs_frame(*run_ids: str) -> pd.DataFrame:
    return pd.DataFrame({"run_id": run_ids, "model": run_ids, "revision": "main", "status": "ok"})


def test_compare_deltas_common_tasks_and_winner() -> None:
    rows = pd.DataFrame(
        [
            task_row("r1", "t1", 0.5),
            task_row("r2", "t1", 0.7),
            task_row("r1", "t2", 0.6, task_config={"num_shots": 5}),
            task_row("r2", "t2", 0.6, task_config={"num_shots": 0}),
            task_row("r1", "t3", 0.9),  # only in r1: shown, not in the mean
            task_row("r1", "agg", 0.55, is_aggregate=True, metric="macro"),
            task_row("r2", "agg", 0.65, is_aggregate=True, metric="macro"),
        ]
    )
    result = build_comparison(runs_frame("r1", "r2"), rows)

    assert result.scores.columns == ["task_name", "is_aggregate", "primary_metric", "A", "B", "B-A"]
    scores = {r[0]: r for r in result.scores.rows}
    assert [r[0] for r in result.scores.rows] == ["t1", "t2", "t3", "agg"]
    assert scores["t1"][3:] == (0.5, 0.7, pytest.approx(0.2))
    assert scores["t3"][3:] == (0.9, None, None)

    assert ("model_config", None, "model", '"r1"', '"r2"') in result.config_differences.rows
    assert ("task_config", "t2", "num_shots", "5", "0") in result.config_differences.rows
    assert not [r for r in result.config_differences.rows if r[1] == "t3"]

    (winner,) = result.winner.rows
    assert dict(zip(result.winner.columns, winner, strict=True)) == {
        "label": "B",
        "run_id": "r2",
        "model": "r2",
        "mean_score": pytest.approx(0.65),
        "common_tasks": 2,
        "task_wins": 1,
        "tied_tasks": 1,
    }
    legend = {r[1]: r for r in result.runs.rows}
    assert legend["r1"][5:] == (pytest.approx(0.55), 0)


def test_compare_a_tie_has_no_winner() -> None:
    rows = pd.DataFrame([task_row("r1", "t", 0.5), task_row("r2", "t", 0.5)])
    (winner,) = build_comparison(runs_frame("r1", "r2"), rows).winner.rows
    assert winner[:3] == (None, None, None) and winner[-1] == 1


def test_compare_without_common_tasks_has_no_mean() -> None:
    rows = pd.DataFrame([task_row("r1", "t", 0.5), task_row("r2", "u", 0.5)])
    result = build_comparison(runs_frame("r1", "r2"), rows)
    assert result.winner.rows[0][1] is None and result.winner.rows[0][4] == 0
    assert all(r[5] is None for r in result.runs.rows)


SUITES = {
    "macro_suite": Suite("macro_suite", ("m1", "m2", "m3"), "macro"),
    "micro_suite": Suite("micro_suite", ("m1", "m2"), "micro"),
}


def metric_rows(run_id: str, metrics: dict[str, str | None], aggregates=("macro_suite",)) -> list:
    rows = [
        {"run_id": run_id, "task_name": t, "is_aggregate": False, "primary_metric": m}
        for t, m in metrics.items()
    ]
    return rows + [
        {"run_id": run_id, "task_name": a, "is_aggregate": True, "primary_metric": "macro"}
        for a in aggregates
    ]


def test_plan_of_a_plain_task_and_of_aggregates() -> None:
    rows = pd.DataFrame(
        metric_rows("a", {"m1": "acc", "m2": "f1"}, ("macro_suite", "micro_suite"))
        + metric_rows("b", {"m1": "acc", "m2": "f1", "m3": "acc"}, ("macro_suite", "micro_suite"))
    )
    plain = significance_plan("m2", rows, "a", "b", SUITES)
    assert (plain.tasks, plain.stratified, plain.metric) == (("m2",), False, "f1")
    macro = significance_plan("macro_suite", rows, "a", "b", SUITES)
    assert (macro.tasks, macro.stratified, macro.metric) == (
        ("m1", "m2", "m3"),
        True,
        "macro(acc, f1)",
    )
    assert not significance_plan("micro_suite", rows, "a", "b", SUITES).stratified


def test_plan_errors_name_the_problem() -> None:
    rows = pd.DataFrame(
        metric_rows("a", {"m1": "acc", "m2": None}, ("macro_suite", "unknown_agg"))
        + metric_rows("b", {"m1": "f1", "m2": "acc"}, ("macro_suite", "unknown_agg"))
    )
    with pytest.raises(ValueError, match=r"no task 'm'; see `evalpipe show a`"):
        significance_plan("m", rows, "a", "b", SUITES)
    with pytest.raises(ValueError, match=r"primary metrics differ \('acc' vs 'f1'\)"):
        significance_plan("m1", rows, "a", "b", SUITES)
    with pytest.raises(ValueError, match="no primary metric in RUN_A"):
        significance_plan("m2", rows, "a", "b", SUITES)
    with pytest.raises(ValueError, match="not a known suite"):
        significance_plan("unknown_agg", rows, "a", "b", SUITES)


def predictions_frame(run_id: str, task: str, values: dict[int, object]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": run_id,
            "task_name": task,
            "doc_id": list(values),
            "metrics": [json.dumps({"acc": v, "other": 7}) for v in values.values()],
        }
    )


def test_instance_values_read_each_tasks_primary_metric() -> None:
    predictions = predictions_frame("a", "t", {0: 1, 1: True, 2: None, 3: "x", 4: 0.25})
    rows = pd.DataFrame([{"run_id": "a", "task_name": "t", "primary_metric": "acc"}])
    values = instance_values(predictions, rows)["value"].tolist()
    assert values[:2] == [1.0, 1.0] and np.isnan(values[2]) and np.isnan(values[3])
    assert values[4] == 0.25


def test_pairing_counts_instances_of_one_run_and_unscored_ones() -> None:
    values = pd.DataFrame(
        {
            "run_id": ["a"] * 4 + ["b"] * 3,
            "task_name": "t",
            "doc_id": [0, 1, 2, 3, 0, 1, 9],
            "value": [1.0, 0.0, 1.0, np.nan, 1.0, 1.0, 0.0],
        }
    )
    result = pair_values(values, "a", "b")
    assert result.paired.n == 2 and list(result.paired.a) == [1.0, 0.0]
    assert (result.paired.only_left, result.paired.only_right) == (1, 1)
    assert (result.unscored_a, result.unscored_b) == (1, 0)


def plan_and_values(values_a: list[float], values_b: list[float], stratified: bool = False):
    rows = pd.DataFrame(
        metric_rows("a", {"m1": "acc", "m2": "acc", "m3": "acc"})
        + metric_rows("b", {"m1": "acc", "m2": "acc", "m3": "acc"})
    )
    plan = significance_plan("macro_suite" if stratified else "m1", rows, "a", "b", SUITES)
    tasks = ["m1", "m2"] if stratified else ["m1"]
    values = pd.DataFrame(
        [
            {"run_id": run, "task_name": task, "doc_id": d, "value": v}
            for run, vals in (("a", values_a), ("b", values_b))
            for task in tasks
            for d, v in enumerate(vals)
        ],
        columns=["run_id", "task_name", "doc_id", "value"],
    )
    return plan, pair_values(values, "a", "b")


def test_significance_row_with_mcnemar() -> None:
    plan, values = plan_and_values([0, 0, 0, 1, 1, 0], [1, 1, 1, 1, 0, 0])
    row = dict(
        zip(
            SIGNIFICANCE_COLUMNS,
            significance("a", "b", plan, values, method="mcnemar", iterations=100, seed=1),
            strict=True,
        )
    )
    assert (row["n01"], row["n10"], row["n_paired"]) == (3, 1, 6)
    assert row["p_value"] == pytest.approx(0.625)
    assert row["diff"] == pytest.approx(2 / 6) and row["ci_low"] <= row["ci_high"]


def test_significance_refusals() -> None:
    plan, values = plan_and_values([0.5, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="needs 0/1 instance values"):
        significance("a", "b", plan, values, method="mcnemar", iterations=10, seed=0)
    plan, values = plan_and_values([0, 1], [1, 1], stratified=True)
    assert plan.stratified
    with pytest.raises(ValueError, match="use --method bootstrap"):
        significance("a", "b", plan, values, method="mcnemar", iterations=10, seed=0)
    plan, values = plan_and_values([], [])
    with pytest.raises(ValueError, match="no instance is scored in both runs"):
        significance("a", "b", plan, values, method="bootstrap", iterations=10, seed=0)
