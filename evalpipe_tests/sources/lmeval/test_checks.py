"""The lm-eval checks judge stored rows against the results file: a lost, changed or extra row,
or a NULL primary score, fails them, naming the row."""

from pathlib import Path

import pandas as pd

from evalpipe.sources.lmeval.checks import groups_outcome, metrics_outcome
from evalpipe.sources.lmeval.reader import LmevalRun, read_results, results_path
from evalpipe.sources.lmeval.tables import build_run_tables
from evalpipe_tests.lmeval_outputs import run_ids


def stored(root: Path, revision: str) -> tuple[LmevalRun, pd.DataFrame, pd.DataFrame]:
    run_id = run_ids(root)[revision]
    run = read_results(results_path(root, run_id))
    tables = build_run_tables(run_id, run, fingerprint=None)
    return run, tables.task_metrics.to_pandas(), tables.task_results.to_pandas()


def test_metrics_as_built_pass(pristine_lmeval: Path) -> None:
    run, metrics, results = stored(pristine_lmeval, "step200")
    assert metrics_outcome(run, metrics, results).passed
    assert groups_outcome(run, metrics, results).passed


def test_a_lost_changed_or_extra_metric_row_fails(pristine_lmeval: Path) -> None:
    run, metrics, results = stored(pristine_lmeval, "step100")
    changed = metrics.copy()
    changed.loc[changed["metric"] == "acc_norm", "value"] = 0.99
    extra = pd.concat([metrics, metrics.assign(metric="invented").head(1)])
    for frame, problem in (
        (metrics.iloc[1:], "in the results file, not in task_metrics"),
        (changed, "stored (0.99"),
        (extra, "in task_metrics, not in the results file"),
    ):
        outcome = metrics_outcome(run, frame, results)
        assert not outcome.passed and outcome.severity == "ERROR"
        assert problem in outcome.metadata["offending_rows"]


def test_a_null_or_wrong_primary_score_fails(pristine_lmeval: Path) -> None:
    run, metrics, results = stored(pristine_lmeval, "step100")
    nulled = results.copy()
    nulled.loc[0, "primary_score"] = None
    outcome = metrics_outcome(run, metrics, nulled)
    assert not outcome.passed
    assert "| toy_colors | acc |  | primary score nan" in outcome.metadata["offending_rows"]
    renamed = results.assign(primary_metric="acc_norm")
    assert not metrics_outcome(run, metrics, renamed).passed


def test_a_group_with_a_wrong_sample_count_fails(pristine_lmeval: Path) -> None:
    run, metrics, results = stored(pristine_lmeval, "step200")
    [group] = run.groups
    group.entry["sample_count"] = {"acc,none": 99}
    outcome = groups_outcome(run, metrics, results)
    assert not outcome.passed
    assert "sample_count 99 ≠ 6" in outcome.metadata["offending_rows"]
