"""Reconciliation checks: rows against the dump, predictions against `num_instances`,
aggregates against their members; and what an outcome promises (severity, metadata)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

import evalpipe.integrity.reconcile as reconcile
from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.integrity.reconcile import (
    CHECK_AGGREGATE_MEMBERS,
    CHECK_AGGREGATES,
    CHECK_PREDICTION_COUNTS,
    CHECK_SOURCE_CONFLICTS,
    CHECK_TASK_ROWS,
    reconcile_aggregates,
    reconcile_prediction_counts,
    reconcile_task_rows,
    soft_findings,
)
from evalpipe.results.suites import BUILTIN_SUITES, Suite, load_suites
from evalpipe_tests.integrity import (
    ACCURACY_TASK,
    CORE,
    CORE_MEMBERS,
    METRICS_ALL,
    MINERVA,
    MINERVA_MEMBERS,
    Run,
    make_run,
    set_value,
    task_row,
)


@pytest.fixture
def run() -> Run:
    return make_run()


def task_rows(run: Run) -> CheckOutcome:
    return reconcile_task_rows(run.task_results, run.expected_task_names, METRICS_ALL)


def prediction_counts(run: Run) -> CheckOutcome:
    return reconcile_prediction_counts(run.task_results, run.prediction_counts)


def aggregates(frame: pd.DataFrame, suites=BUILTIN_SUITES) -> tuple[CheckOutcome, CheckOutcome]:
    return reconcile_aggregates(frame, suites)


def table(markdown: str) -> list[dict[str, str]]:
    """The rows of a markdown table as header → cell text."""
    lines = [line.strip().strip("|") for line in markdown.splitlines() if line.startswith("|")]
    header, *rows = ([cell.strip() for cell in line.split("|")] for line in lines)
    return [dict(zip(header, row, strict=True)) for row in rows[1:]]


def without_task(frame: pd.DataFrame, task_name: str) -> pd.DataFrame:
    return frame.loc[frame["task_name"] != task_name].reset_index(drop=True)


# task rows against the dump


def test_one_row_per_source_task_passes(run: Run) -> None:
    outcome = task_rows(run)
    assert outcome.passed
    assert outcome.metadata["rows_checked"] == outcome.metadata["expected_tasks"] == 16
    assert outcome.metadata["source_file"] == METRICS_ALL


def test_a_task_missing_from_task_results_fails(run: Run) -> None:
    outcome = task_rows(run.with_(task_results=without_task(run.task_results, ACCURACY_TASK)))
    assert not outcome.passed and outcome.blocking
    assert outcome.metadata["missing_tasks"] == 1
    assert table(outcome.metadata["offending_rows"]) == [
        {"task_name": ACCURACY_TASK, "problem": "in source, not in task_results"}
    ]


def test_a_task_not_in_the_source_fails(run: Run) -> None:
    outcome = reconcile_task_rows(
        run.task_results, run.expected_task_names - {ACCURACY_TASK}, METRICS_ALL
    )
    assert not outcome.passed
    assert outcome.metadata["extra_tasks"] == 1
    assert table(outcome.metadata["offending_rows"]) == [
        {"task_name": ACCURACY_TASK, "problem": "in task_results, not in source"}
    ]


def test_a_task_listed_twice_fails(run: Run) -> None:
    twice = run.task_results.loc[run.task_results["task_name"] == ACCURACY_TASK]
    outcome = task_rows(run.with_(task_results=pd.concat([run.task_results, twice])))
    assert not outcome.passed
    assert outcome.metadata["duplicated_tasks"] == 1
    assert table(outcome.metadata["offending_rows"]) == [
        {"task_name": ACCURACY_TASK, "problem": "2 rows"}
    ]


def test_a_row_without_task_name_fails(run: Run) -> None:
    frame = set_value(run.task_results, ACCURACY_TASK, "task_name", None)
    outcome = reconcile_task_rows(frame, run.expected_task_names - {ACCURACY_TASK}, METRICS_ALL)
    assert not outcome.passed
    assert outcome.metadata["rows_without_task_name"] == 1


# predictions against num_instances


def test_predictions_matching_num_instances_pass(run: Run) -> None:
    outcome = prediction_counts(run)
    assert outcome.passed, outcome.description
    assert outcome.metadata["tasks_checked"] == 13
    assert outcome.metadata["skipped_without_num_instances"] == 1, "the artifact-only task"


def test_a_predictions_table_missing_rows_fails(run: Run) -> None:
    short = run.predictions.drop(
        run.predictions.index[run.predictions["task_name"] == ACCURACY_TASK][:1]
    )
    outcome = prediction_counts(run.with_(predictions=short))
    assert not outcome.passed and outcome.severity == "ERROR"
    n = CORE_MEMBERS[ACCURACY_TASK][1]
    assert table(outcome.metadata["offending_rows"]) == [
        {
            "task_name": ACCURACY_TASK,
            "num_instances": str(n),
            "predictions_rows": str(n - 1),
            "difference": "-1",
            "source_file": METRICS_ALL,
        }
    ]
    assert outcome.metadata["source_file"] == METRICS_ALL


def test_a_task_without_any_predictions_fails(run: Run) -> None:
    outcome = prediction_counts(run.with_(predictions=without_task(run.predictions, ACCURACY_TASK)))
    assert not outcome.passed
    [row] = table(outcome.metadata["offending_rows"])
    assert (row["task_name"], row["predictions_rows"]) == (ACCURACY_TASK, "0")


def test_predictions_for_an_unknown_task_fail(run: Run) -> None:
    stray = run.predictions.iloc[[0]].assign(task_name="stray:task")
    outcome = prediction_counts(run.with_(predictions=pd.concat([run.predictions, stray])))
    assert not outcome.passed
    [row] = table(outcome.metadata["offending_rows"])
    assert (row["task_name"], row["num_instances"], row["predictions_rows"]) == (
        "stray:task",
        "null",
        "1",
    )


def test_prediction_counts_accept_float_num_instances() -> None:
    frame = pd.DataFrame([task_row("t", "acc_raw", 0.5, 3, line=1, task_idx=0)])
    assert reconcile_prediction_counts(frame.astype({"num_instances": float}), {"t": 3}).passed


# aggregates against their members


def test_an_aggregate_equal_to_its_members_macro_mean_passes(run: Run) -> None:
    agreement, _ = aggregates(run.task_results)
    assert agreement.passed, agreement.description
    assert agreement.metadata["aggregates_checked"] == 1, "only core_9mcqa is complete"


def test_an_aggregate_0_01_off_its_members_fails(run: Run) -> None:
    score = run.task_results.set_index("task_name").at[CORE, "primary_score"]
    agreement, _ = aggregates(set_value(run.task_results, CORE, "primary_score", score + 0.01))
    assert not agreement.passed and agreement.blocking
    assert CORE in agreement.description
    assert agreement.metadata["max_abs_difference"] == pytest.approx(0.01)
    [row] = table(agreement.metadata["offending_rows"])
    assert row == {
        "aggregate": CORE,
        "averaging": "macro",
        "expected": f"{score:g}",
        "actual": f"{score + 0.01:g}",
        "difference": "0.01",
        "members": "9",
        "source_file": METRICS_ALL,
    }


def test_a_difference_within_tolerance_passes(run: Run) -> None:
    score = run.task_results.set_index("task_name").at[CORE, "primary_score"]
    frame = set_value(run.task_results, CORE, "primary_score", score + 5e-7)
    assert aggregates(frame)[0].passed


def test_an_aggregate_without_a_score_fails(run: Run) -> None:
    agreement, _ = aggregates(set_value(run.task_results, CORE, "primary_score", None))
    assert not agreement.passed


def micro_run() -> pd.DataFrame:
    """Two members of unequal size, where the micro and macro means differ."""
    members = {"a": (1.0, 30), "b": (0.0, 10)}
    rows = [
        task_row(name, "acc_raw", s, n, line=i, task_idx=i)
        for i, (name, (s, n)) in enumerate(members.items())
    ]
    micro = math.fsum(s * n for s, n in members.values()) / sum(n for _, n in members.values())
    rows.append(task_row("pair", "micro", micro, None, line=9, aggregate=True))
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("primary_metric", "suite_averaging", "passes"),
    [
        ("micro", "macro", True),  # the record's own averaging wins over the suite's
        ("macro", "micro", False),
        ("mc_or_rc", "micro", True),  # not an averaging: the suite's applies
        ("mc_or_rc", "macro", False),
    ],
)
def test_micro_and_macro_averaging(primary_metric: str, suite_averaging: str, passes: bool) -> None:
    frame = micro_run()
    frame.loc[frame["task_name"] == "pair", "primary_metric"] = primary_metric
    suites = {"pair": Suite("pair", ("a", "b"), suite_averaging)}
    assert aggregates(frame, suites)[0].passed is passes


def test_a_micro_mean_needs_every_members_num_instances() -> None:
    frame = micro_run()
    frame.loc[frame["task_name"] == "b", "num_instances"] = None
    agreement, presence = aggregates(frame, {"pair": Suite("pair", ("a", "b"), "micro")})
    assert agreement.passed and agreement.metadata["aggregates_checked"] == 0
    assert not presence.passed and "pair: b" in presence.metadata["missing_members"]


def test_a_missing_member_is_a_warning_not_an_error(run: Run) -> None:
    agreement, presence = aggregates(run.task_results)
    assert agreement.passed
    assert presence.check == CHECK_AGGREGATE_MEMBERS
    assert not presence.passed and presence.severity == "WARN" and not presence.blocking
    missing = "minerva_math_counting_and_probability::tulu"
    assert MINERVA in presence.description and missing in presence.description
    assert presence.metadata["missing_members"] == (
        f"{MINERVA}: minerva_math_counting_and_probability::tulu, "
        "minerva_math_intermediate_algebra::tulu, minerva_math_number_theory::tulu, "
        "minerva_math_precalculus::tulu"
    )
    [row] = table(presence.metadata["offending_rows"])
    partial = math.fsum(s for s, _ in MINERVA_MEMBERS.values()) / len(MINERVA_MEMBERS)
    assert (row["aggregate"], row["present"], row["partial_mean"]) == (
        MINERVA,
        "3/7",
        f"{partial:g}",
    )


def test_a_member_removed_turns_a_checked_aggregate_into_a_warning(run: Run) -> None:
    agreement, presence = aggregates(without_task(run.task_results, ACCURACY_TASK))
    assert agreement.passed and agreement.metadata["aggregates_checked"] == 0
    assert f"{CORE}: {ACCURACY_TASK}" in presence.metadata["missing_members"]


def test_an_aggregate_missing_from_the_registry_is_listed_not_failed(run: Run) -> None:
    agreement, presence = aggregates(run.task_results, {})
    assert agreement.passed and presence.passed
    assert agreement.metadata["unknown_suites"] == f"{CORE}, {MINERVA}"


def test_a_user_defined_suite_is_checked(run: Run, tmp_path: Path) -> None:
    extra = tmp_path / "suites.json"
    members = ["minerva_math_algebra::tulu", "minerva_math_geometry::tulu"]
    extra.write_text(json.dumps({"minerva_pair": {"members": members, "averaging": "macro"}}))
    aggregate = task_row("minerva_pair", "macro", 0.9, None, line=99, aggregate=True)
    frame = pd.concat([run.task_results, pd.DataFrame([aggregate])], ignore_index=True)
    agreement, _ = reconcile_aggregates(frame, load_suites(extra))
    assert not agreement.passed and "minerva_pair" in agreement.description


# soft findings


def test_no_findings_pass() -> None:
    outcome = soft_findings([])
    assert outcome.passed and outcome.check == CHECK_SOURCE_CONFLICTS


def test_a_conflict_resolved_by_date_is_a_warning() -> None:
    message = "task 'arc_easy' has different records on lines 3 and 9; kept line 9"
    outcome = soft_findings([("conflicting_records", METRICS_ALL, message)])
    assert not outcome.passed and outcome.severity == "WARN" and not outcome.blocking
    assert outcome.metadata["source_file"] == METRICS_ALL
    assert outcome.metadata["kinds"] == "conflicting_records: 1"
    assert message in outcome.metadata["offending_rows"]


# outcomes


def test_only_errors_block() -> None:
    assert CheckOutcome("c", False, "ERROR", "").blocking
    assert not CheckOutcome("c", False, "WARN", "").blocking


# every check in this module can fail

CASES: dict[str, tuple[Callable[[Run], CheckOutcome], Callable[[Run], CheckOutcome], str]] = {
    CHECK_TASK_ROWS: (
        task_rows,
        lambda r: task_rows(r.with_(task_results=without_task(r.task_results, ACCURACY_TASK))),
        "ERROR",
    ),
    CHECK_PREDICTION_COUNTS: (
        prediction_counts,
        lambda r: prediction_counts(r.with_(predictions=r.predictions.iloc[1:])),
        "ERROR",
    ),
    CHECK_AGGREGATES: (
        lambda r: aggregates(r.task_results)[0],
        lambda r: aggregates(set_value(r.task_results, CORE, "primary_score", 0.9))[0],
        "ERROR",
    ),
    CHECK_AGGREGATE_MEMBERS: (
        lambda r: aggregates(without_task(r.task_results, MINERVA))[1],
        lambda r: aggregates(without_task(r.task_results, ACCURACY_TASK))[1],
        "WARN",
    ),
    CHECK_SOURCE_CONFLICTS: (
        lambda r: soft_findings([]),
        lambda r: soft_findings([("per_task_file_differs", "task-000-x-metrics.json", "differs")]),
        "WARN",
    ),
}


def test_every_check_of_this_module_is_covered() -> None:
    names = {v for k, v in vars(reconcile).items() if k.startswith("CHECK_")}
    assert names == set(CASES)


@pytest.mark.parametrize("check", sorted(CASES))
def test_every_check_can_fail(run: Run, check: str) -> None:
    passing, failing, severity = CASES[check]
    clean, corrupted = passing(run), failing(run)
    assert (clean.check, clean.passed) == (check, True)
    assert (corrupted.check, corrupted.passed, corrupted.severity) == (check, False, severity)
    json.dumps(clean.metadata)
    json.dumps(corrupted.metadata)
