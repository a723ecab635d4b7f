"""The GX suites on one run's partitions: clean data passes; each kind of damage fails, as an
ERROR naming the property and showing the offending row."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import evalpipe.integrity.gx_suites as gx_suites
from evalpipe.integrity.gx_suites import (
    CHECK_PREDICTIONS,
    CHECK_TASK_RESULTS,
    frame_from_arrow,
    is_bounded_metric,
    validate_predictions,
    validate_task_results,
)
from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.results.suites import Suite
from evalpipe.sources.olmes.checks import CHECK_REQUESTS, validate_requests
from evalpipe.storage.schemas import SCHEMAS
from evalpipe_tests.integrity import (
    ACCURACY_TASK,
    ARTIFACT_ONLY_TASK,
    BPB_TASK,
    CORE,
    NOW,
    Run,
    make_run,
    set_value,
)

BOUNDED = "primary_score within [0, 1] for bounded metrics"


@pytest.fixture
def run() -> Run:
    return make_run()


def results(frame: pd.DataFrame, **kwargs) -> CheckOutcome:
    return validate_task_results(frame, NOW, **kwargs)


def assert_fails(outcome: CheckOutcome, expectation: str, *shown: str) -> None:
    """Failed as a blocking ERROR, naming the expectation and showing the offending values."""
    assert not outcome.passed
    assert outcome.severity == "ERROR" and outcome.blocking
    assert expectation in outcome.description
    assert expectation in outcome.metadata["failed_expectations"]
    for text in shown:
        assert text in outcome.metadata["offending_rows"]


def test_clean_partitions_pass_every_expectation(run: Run) -> None:
    for outcome, rows in (
        (results(run.task_results), len(run.task_results)),
        (validate_predictions(run.predictions), len(run.predictions)),
        (validate_requests(run.requests), len(run.requests)),
    ):
        assert outcome.passed, outcome.description
        assert outcome.metadata["rows_checked"] == rows
        assert outcome.metadata["failures"] == 0
        assert outcome.metadata["offending_rows"] == "_no rows_"
        json.dumps(outcome.metadata)


def test_check_names_are_the_properties_tested(run: Run) -> None:
    assert results(run.task_results).check == CHECK_TASK_RESULTS == "task_results_schema_and_ranges"
    assert validate_predictions(run.predictions).check == CHECK_PREDICTIONS
    assert validate_requests(run.requests).check == CHECK_REQUESTS


# task_results: ranges


def test_an_accuracy_of_1_7_fails(run: Run) -> None:
    outcome = results(set_value(run.task_results, ACCURACY_TASK, "primary_score", 1.7))
    assert_fails(outcome, f"{BOUNDED} (1 row)", ACCURACY_TASK, "primary_score=1.7")
    assert outcome.metadata["source_file"] == "metrics-all.jsonl"


def test_a_bits_per_byte_of_1_7_passes(run: Run) -> None:
    outcome = results(set_value(run.task_results, BPB_TASK, "primary_score", 1.7))
    assert outcome.passed, outcome.description
    assert "bits_per_byte_corr" in outcome.metadata["unchecked_metrics"]


def test_a_negative_accuracy_fails(run: Run) -> None:
    outcome = results(set_value(run.task_results, ACCURACY_TASK, "primary_score", -0.1))
    assert_fails(outcome, BOUNDED, "primary_score=-0.1")


def test_a_macro_aggregate_of_accuracies_is_bounded(run: Run) -> None:
    outcome = results(set_value(run.task_results, CORE, "primary_score", 1.7))
    assert_fails(outcome, BOUNDED, CORE)


def test_an_aggregate_of_unbounded_members_is_not_bounded(run: Run) -> None:
    bpb_suite = Suite("bpb_mean", (BPB_TASK,), "macro")
    aggregate = run.task_results.iloc[[0]].assign(task_name="bpb_mean", primary_score=1.7)
    frame = pd.concat([run.task_results, aggregate], ignore_index=True)
    assert results(frame, suites={"bpb_mean": bpb_suite}).passed
    assert not results(frame, suites={}).passed, "without members, `macro` alone means bounded"


def test_an_unknown_metric_is_not_range_checked_but_listed(run: Run) -> None:
    frame = set_value(run.task_results, BPB_TASK, "primary_metric", "mystery_score")
    outcome = results(set_value(frame, BPB_TASK, "primary_score", 17.0))
    assert outcome.passed
    assert outcome.metadata["unchecked_metrics"] == "mystery_score"


def test_num_instances_of_zero_fails(run: Run) -> None:
    outcome = results(set_value(run.task_results, ACCURACY_TASK, "num_instances", 0))
    assert_fails(outcome, "num_instances positive (1 row)", ACCURACY_TASK, "num_instances=0")


def test_evaluated_at_in_the_future_fails(run: Run) -> None:
    future = pd.Timestamp(NOW + timedelta(days=1))
    outcome = results(set_value(run.task_results, ACCURACY_TASK, "evaluated_at", future))
    assert_fails(outcome, "evaluated_at not in the future (1 row)", ACCURACY_TASK)


def test_evaluated_at_missing_on_a_metrics_all_row_fails(run: Run) -> None:
    outcome = results(set_value(run.task_results, ACCURACY_TASK, "evaluated_at", pd.NaT))
    assert_fails(outcome, "evaluated_at parsed on metrics-all rows (1 row)", ACCURACY_TASK)


def test_evaluated_at_may_be_missing_on_an_artifact_only_row(run: Run) -> None:
    artifact = run.task_results.loc[run.task_results["task_name"] == ARTIFACT_ONLY_TASK]
    assert artifact["evaluated_at"].isna().all()
    assert results(run.task_results).passed


def test_an_unknown_source_fails(run: Run) -> None:
    outcome = results(set_value(run.task_results, ACCURACY_TASK, "source", "guess"))
    assert_fails(outcome, "source is a known source", "source='guess'")


# task_results: keys and structure


def test_a_duplicate_run_and_task_fails(run: Run) -> None:
    duplicated = run.task_results.loc[run.task_results["task_name"] == ACCURACY_TASK]
    frame = pd.concat([run.task_results, duplicated], ignore_index=True)
    assert_fails(results(frame), "(run_id, task_name) unique (2 rows)", ACCURACY_TASK)


def test_a_null_task_name_fails(run: Run) -> None:
    outcome = results(set_value(run.task_results, ACCURACY_TASK, "task_name", None))
    assert_fails(outcome, "task_name not null (1 row)", "task_name=null")


def test_scores_stored_as_text_fail_on_type_alone(run: Run) -> None:
    frame = run.task_results.assign(primary_score=run.task_results["primary_score"].astype(str))
    outcome = results(frame)
    assert_fails(outcome, "primary_score is float (dtype str", "primary_score='0.41'")
    assert outcome.metadata["failures"] == 1, "the range check is not reported on top"


def test_a_missing_column_fails_once(run: Run) -> None:
    outcome = results(run.task_results.drop(columns=["num_instances"]))
    assert_fails(outcome, "required columns present (missing: num_instances)")
    assert outcome.metadata["failures"] == 1, "expectations on that column are not repeated"


def test_nullable_integers_must_stay_integers(run: Run) -> None:
    table = pa.Table.from_pandas(
        run.task_results, schema=SCHEMAS["task_results"], preserve_index=False
    ).replace_schema_metadata(None)  # as written to the lake: no pandas dtypes recorded
    default = table.to_pandas()  # pyarrow turns an int64 column with nulls into float64
    assert_fails(results(default), "task_idx is int (dtype float64")
    assert results(frame_from_arrow(table)).passed


def test_offending_rows_are_found_whatever_the_index(run: Run) -> None:
    frame = set_value(run.task_results, ACCURACY_TASK, "primary_score", 1.7)
    frame.index = range(100, 100 + 2 * len(frame), 2)
    assert_fails(results(frame), BOUNDED, ACCURACY_TASK, "primary_score=1.7")


# predictions and requests


def test_a_duplicate_prediction_fails(run: Run) -> None:
    frame = pd.concat([run.predictions, run.predictions.iloc[[0]]], ignore_index=True)
    outcome = validate_predictions(frame, source_file="lake/predictions/x/data.parquet")
    assert_fails(outcome, "(run_id, task_name, doc_id) unique (2 rows)")
    assert outcome.metadata["source_file"] == "lake/predictions/x/data.parquet"


def test_doc_ids_stored_as_text_fail(run: Run) -> None:
    frame = run.predictions.assign(doc_id=run.predictions["doc_id"].astype(str))
    assert_fails(validate_predictions(frame), "doc_id is int (dtype str", "doc_id='0'")


def test_a_null_doc_id_fails(run: Run) -> None:
    frame = run.predictions.assign(doc_id=run.predictions["doc_id"].astype("Int64"))
    frame.loc[3, "doc_id"] = pd.NA
    assert_fails(validate_predictions(frame), "doc_id not null (1 row)", "doc_id=null")


def test_a_text_value_in_a_number_column_is_found_row_by_row(run: Run) -> None:
    frame = run.predictions.assign(doc_id=run.predictions["doc_id"].astype(object))
    frame.loc[2, "doc_id"] = "2"
    assert_fails(validate_predictions(frame), "doc_id is int (1 row)", "doc_id='2'")


def test_several_requests_per_document_pass_but_a_repeated_idx_fails(run: Run) -> None:
    assert run.requests.duplicated(["task_name", "doc_id"]).any()
    frame = run.requests.assign(idx=0)
    assert_fails(validate_requests(frame), "(run_id, task_name, doc_id, idx) unique")


def test_request_idx_stored_as_float_fails(run: Run) -> None:
    frame = run.requests.assign(idx=run.requests["idx"].astype(float))
    assert_fails(validate_requests(frame), "idx is int (dtype float64")


# the rule for bounded metrics


@pytest.mark.parametrize(
    ("metric", "bounded"),
    [
        ("acc_raw", True),
        ("acc_per_char", True),
        ("acc_per_token", True),
        ("accuracy", True),
        ("exact_match", True),
        ("exact_match_flex", True),
        ("em", True),
        ("f1", True),
        ("pass_at_1", True),
        ("pass_at_10", True),
        ("recall", True),
        ("precision", True),
        ("macro", True),
        ("micro", True),
        ("mc_or_rc", True),
        ("ACC_RAW", True),
        ("bits_per_byte_corr", False),
        ("acc_bpb", False),
        ("perplexity", False),
        ("word_perplexity", False),
        ("logits_per_char_corr", False),
        ("sum_logits_corr", False),
        ("loss", False),
        ("nll", False),
        ("mystery_score", False),
        ("emphasis", False),
        ("", False),
        (None, False),
    ],
)
def test_which_metrics_are_bounded(metric: str | None, bounded: bool) -> None:
    assert is_bounded_metric(metric) is bounded


# every check in this module can fail

CASES: dict[str, tuple[Callable[[Run], CheckOutcome], Callable[[Run], CheckOutcome]]] = {
    CHECK_TASK_RESULTS: (
        lambda r: results(r.task_results),
        lambda r: results(set_value(r.task_results, ACCURACY_TASK, "primary_score", 1.7)),
    ),
    CHECK_PREDICTIONS: (
        lambda r: validate_predictions(r.predictions),
        lambda r: validate_predictions(r.predictions.drop(columns=["doc_id"])),
    ),
    CHECK_REQUESTS: (
        lambda r: validate_requests(r.requests),
        lambda r: validate_requests(r.requests.assign(task_name=None)),
    ),
}


def test_every_check_of_this_module_is_covered() -> None:
    names = {v for k, v in vars(gx_suites).items() if k.startswith("CHECK_")} | {CHECK_REQUESTS}
    assert names == set(CASES)


@pytest.mark.parametrize("check", sorted(CASES))
def test_every_check_can_fail(run: Run, check: str) -> None:
    passing, failing = CASES[check]
    clean, corrupted = passing(run), failing(run)
    assert (clean.check, clean.passed) == (check, True)
    assert (corrupted.check, corrupted.passed, corrupted.severity) == (check, False, "ERROR")
    json.dumps(corrupted.metadata)


# several runs validated together


def another_run(run: Run, run_id: str) -> Run:
    return run.with_(
        task_results=run.task_results.assign(run_id=run_id),
        predictions=run.predictions.assign(run_id=run_id),
        requests=run.requests.assign(run_id=run_id),
    )


def test_runs_validated_together_get_exactly_the_outcome_each_gets_alone(run: Run) -> None:
    runs = [run, another_run(run, "b"), another_run(run, "c")]
    together = gx_suites.validate_task_results_of_runs(
        [r.task_results for r in runs], NOW, sources=["x", "y", "z"]
    )
    alone = [results(r.task_results, source_file=f) for r, f in zip(runs, "xyz", strict=True)]
    assert together == alone
    assert all(o.passed for o in together)
    spec = gx_suites.PREDICTIONS
    assert gx_suites.validate_table_of_runs(spec, [r.predictions for r in runs]) == [
        validate_predictions(r.predictions) for r in runs
    ]


def test_one_bad_run_among_several_fails_alone_with_its_own_offending_rows(run: Run) -> None:
    bad = another_run(run, "bad")
    bad = bad.with_(task_results=set_value(bad.task_results, ACCURACY_TASK, "primary_score", 1.7))
    runs = [run, bad, another_run(run, "c")]
    outcomes = gx_suites.validate_task_results_of_runs([r.task_results for r in runs], NOW)
    assert [o.passed for o in outcomes] == [True, False, True]
    assert_fails(outcomes[1], BOUNDED, "1.7")
    assert outcomes[1] == results(bad.task_results)


PREPARED_SCRIPT = """
import threading

import evalpipe.sources.olmes.checks
from evalpipe.integrity import gx_suites
from evalpipe_tests.integrity import NOW, make_run

run = make_run()
gx_suites.prepare_in_background()
gx_suites.prepare_in_background()
outcome = gx_suites.validate_task_results(run.task_results, NOW)
assert outcome.passed, outcome.description
broken = run.task_results.copy()
broken.loc[0, "primary_score"] = 1.7
assert not gx_suites.validate_task_results(broken, NOW).passed
for thread in threading.enumerate():
    if thread.name == "evalpipe-gx-prepare":
        thread.join()
names = sorted(suite.name for suite in gx_suites._context().suites.all())
print(",".join(names))
"""


def test_suites_prepared_in_the_background_serve_the_first_validation() -> None:
    """An ingest lets GX import and build its suites on another thread while it reads its
    first runs: a validation that comes first waits for them, answers as always, and no suite
    is built twice (a fresh process, so nothing is cached yet)."""
    done = subprocess.run(
        [sys.executable, "-c", PREPARED_SCRIPT],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    built = done.stdout.strip().split(",")
    assert len(built) == len(set(built))
    assert set(built) == {"evalpipe_task_results", "evalpipe_predictions", "evalpipe_requests"}
