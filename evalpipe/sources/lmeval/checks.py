"""Every integrity check of an lm-eval run: the shared suites and reconciliations, plus what
only lm-eval output can be checked for (its metrics as written, its groups' arithmetic, its
samples against its scores).

Expected figures are recomputed from the parsed results file, and the tables judged are the
staged partitions as they will be published, so a builder bug or a lost row is caught.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pandas as pd

from evalpipe.core.output import frame_markdown
from evalpipe.integrity.gx_suites import (
    CHECK_PREDICTIONS,
    CHECK_TASK_RESULTS,
    PREDICTIONS,
    validate_table_of_runs,
    validate_task_results_of_runs,
)
from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.integrity.reconcile import (
    CHECK_AGGREGATES,
    CHECK_PREDICTION_COUNTS,
    CHECK_TASK_ROWS,
    reconcile_prediction_counts,
    reconcile_task_rows,
)
from evalpipe.results.status import RunCheck
from evalpipe.sources.lmeval.reader import LmevalRun

CHECK_METRICS = "task_metrics_match_results"
CHECK_SAMPLES = "samples_match_scores"
TOLERANCE = 1e-6

PER_RUN_CHECKS: tuple[tuple[str, str, bool, str], ...] = (
    (
        "task_results",
        CHECK_TASK_RESULTS,
        True,
        "Great Expectations suite on the run's task_results: columns and types, one row per "
        "task or group, source known, primary_score in [0, 1] for bounded metrics, "
        "num_instances positive, evaluated_at not in the future.",
    ),
    (
        "task_results",
        CHECK_TASK_ROWS,
        True,
        "task_results has exactly one row per task of the results file and per group with "
        "aggregate metrics.",
    ),
    (
        "task_metrics",
        CHECK_METRICS,
        True,
        "task_metrics holds every numeric `metric,filter` entry of the results file, with the "
        "same value and standard error, and nothing else; every task_results row has a "
        "primary metric and score, equal to the entry lm-eval's table shows first.",
    ),
    (
        "task_results",
        CHECK_AGGREGATES,
        True,
        "Each group metric equals the mean of its member tasks' values (weighted by their "
        "sizes, or plain, as lm-eval's weight_by_size chose) within 1e-6, over the members "
        "that have the metric, and its sample_count is their total size.",
    ),
    (
        "predictions",
        CHECK_PREDICTIONS,
        True,
        "Great Expectations suite on the run's predictions: columns and types, one row per "
        "(task, doc_id).",
    ),
    (
        "predictions",
        CHECK_PREDICTION_COUNTS,
        True,
        "With --log_samples, every task has as many predictions rows as its n-samples "
        "(passes, saying so, for a run logged without samples).",
    ),
    (
        "predictions",
        CHECK_SAMPLES,
        False,
        "For metrics lm-eval aggregates by mean, the mean of the per-sample values equals the "
        "task's reported score (informational).",
    ),
)


TableReader = Callable[[str], pd.DataFrame]


@dataclass(frozen=True)
class RunToCheck:
    """One run's parsed results file and its staged tables."""

    run: LmevalRun
    read: TableReader


def evaluate_runs(runs: Sequence[RunToCheck], now: datetime | None = None) -> list[list[RunCheck]]:
    """Every check of several runs, in `PER_RUN_CHECKS` order; each GX suite validated once."""
    results = [r.read("task_results") for r in runs]
    predictions = [r.read("predictions") for r in runs]
    sources = [str(r.run.path) for r in runs]
    task_suites = validate_task_results_of_runs(results, now, suites={}, sources=sources)
    prediction_suites = validate_table_of_runs(PREDICTIONS, predictions, sources=sources)
    checks = []
    for i, item in enumerate(runs):
        run = item.run
        metrics = item.read("task_metrics")
        expected = {e.name for e in run.entries}
        checks.append(
            [
                RunCheck("task_results", task_suites[i]),
                RunCheck("task_results", reconcile_task_rows(results[i], expected, sources[i])),
                RunCheck("task_metrics", metrics_outcome(run, metrics, results[i])),
                RunCheck("task_results", groups_outcome(run, metrics, results[i])),
                RunCheck("predictions", prediction_suites[i]),
                RunCheck("predictions", counts_outcome(run, results[i], predictions[i])),
                RunCheck("predictions", samples_outcome(run, predictions[i])),
            ]
        )
    return checks


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return (a is None or pd.isna(a)) and (b is None or pd.isna(b))
    return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=1e-12)


def metrics_outcome(
    run: LmevalRun, metrics: pd.DataFrame, task_results: pd.DataFrame
) -> CheckOutcome:
    """ERROR unless the stored task_metrics equal the results file's numeric entries and each
    task_results row's primary score is its primary entry's value (never NULL)."""
    expected = {
        (e.name, m.metric, m.filter or ""): (m.value, m.stderr)
        for e in run.entries
        for m in e.metrics
    }
    stored: dict[tuple[str, str, str], tuple[Any, Any]] = {}
    problems = []
    for task, metric, filter_name, value, stderr in metrics[
        ["task_name", "metric", "filter", "value", "stderr"]
    ].itertuples(index=False):
        key = (task, metric, "" if pd.isna(filter_name) else filter_name)
        if key in stored:
            problems.append((*key, "stored twice"))
        stored[key] = (value, stderr)
    for key, (value, stderr) in expected.items():
        if key not in stored:
            problems.append((*key, "in the results file, not in task_metrics"))
        elif not (_same(stored[key][0], value) and _same(stored[key][1], stderr)):
            problems.append((*key, f"stored {stored[key]}, results file has {(value, stderr)}"))
    primaries = {e.name: e.primary for e in run.entries}
    for task, metric, score in task_results[
        ["task_name", "primary_metric", "primary_score"]
    ].itertuples(index=False):
        primary = primaries.get(task)
        if primary is None or metric != primary.key or not _same(score, primary.value):
            expected_primary = (primary.key, primary.value) if primary else None
            problems.append(
                (task, metric, "", f"primary score {score!r}, results file has {expected_primary}")
            )
    problems += [
        (*key, "in task_metrics, not in the results file")
        for key in stored.keys() - expected.keys()
    ]
    frame = pd.DataFrame(problems, columns=["task_name", "metric", "filter", "problem"])
    return CheckOutcome(
        CHECK_METRICS,
        not problems,
        "ERROR",
        f"all {len(expected)} numeric metric entries of {run.path.name} are in task_metrics"
        if not problems
        else f"{len(problems)} task_metrics or primary score rows differ from {run.path.name}",
        {
            "metrics_expected": len(expected),
            "rows_checked": len(metrics),
            "failures": len(problems),
            "offending_rows": frame_markdown(frame),
            "source_file": str(run.path),
        },
    )


def groups_outcome(
    run: LmevalRun, metrics: pd.DataFrame, task_results: pd.DataFrame
) -> CheckOutcome:
    """ERROR when a group's stored metric is neither the size-weighted nor the plain mean of
    its member tasks' stored values (lm-eval's `weight_by_size` is not written to the results
    file, so either is accepted and the one that matched is reported)."""
    values = {
        (t, m, "" if pd.isna(f) else f): v
        for t, m, f, v in metrics[["task_name", "metric", "filter", "value"]].itertuples(
            index=False
        )
    }
    sizes = dict(zip(task_results["task_name"], task_results["num_instances"], strict=True))
    checked, rows = 0, []
    for group in run.groups:
        leaves = run.leaves(group.name)
        counts = group.entry.get("sample_count")
        counts = counts if isinstance(counts, dict) else {}
        for m in group.metrics:
            key = (m.metric, m.filter or "")
            members = [leaf for leaf in leaves if (leaf, *key) in values]
            actual = values.get((group.name, *key))
            weights = [sizes.get(leaf) for leaf in members]
            checked += 1
            if not members or any(w is None or pd.isna(w) for w in weights):
                rows.append((group.name, m.key, actual, None, None, "members without a value"))
                continue
            scores = [values[(leaf, *key)] for leaf in members]
            micro = math.fsum(s * w for s, w in zip(scores, weights, strict=True)) / sum(weights)
            macro = math.fsum(scores) / len(scores)
            ok = actual is not None and min(abs(actual - micro), abs(actual - macro)) <= TOLERANCE
            counted = counts.get(f"{m.metric},{m.filter}" if m.filter else m.metric)
            if counted is not None and counted != sum(weights):
                rows.append(
                    (
                        group.name,
                        m.key,
                        actual,
                        micro,
                        macro,
                        f"sample_count {counted} ≠ {sum(weights)}",
                    )
                )
            elif not ok:
                rows.append((group.name, m.key, actual, micro, macro, "differs from both means"))
    frame = pd.DataFrame(
        rows, columns=["group", "metric", "actual", "weighted_mean", "plain_mean", "problem"]
    )
    return CheckOutcome(
        CHECK_AGGREGATES,
        not rows,
        "ERROR",
        f"all {checked} group metrics equal their members' mean"
        if not rows
        else f"{len(rows)} of {checked} group metrics differ from their members' mean: "
        + ", ".join(sorted({r[0] for r in rows})),
        {
            "groups": len(run.groups),
            "metrics_checked": checked,
            "tolerance": TOLERANCE,
            "failures": len(rows),
            "offending_rows": frame_markdown(frame),
            "source_file": str(run.path),
        },
    )


def counts_outcome(
    run: LmevalRun, task_results: pd.DataFrame, predictions: pd.DataFrame
) -> CheckOutcome:
    """The shared count reconciliation when the run logged samples; without any samples file
    there is nothing to count, which the outcome says rather than failing every task."""
    if not run.samples:
        return CheckOutcome(
            CHECK_PREDICTION_COUNTS,
            True,
            "ERROR",
            "no samples files (lm-eval ran without --log_samples): no predictions to count",
            {"tasks_checked": 0, "failures": 0, "samples_files": 0},
        )
    counts = predictions.groupby("task_name").size().to_dict() if len(predictions) else {}
    return reconcile_prediction_counts(task_results, counts)


def samples_outcome(run: LmevalRun, predictions: pd.DataFrame) -> CheckOutcome:
    """WARN when the mean of a task's per-sample values of a mean-aggregated metric is not its
    reported score (a samples file from another evaluation, or one cut short)."""
    aggregation = {}
    for task, config in run.section("configs").items():
        items = config.get("metric_list") if isinstance(config, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("aggregation") == "mean":
                aggregation.setdefault(task, set()).add(item.get("metric"))
    sums: dict[tuple[str, str], list[float]] = {}
    for task, text in predictions[["task_name", "metrics"]].itertuples(index=False):
        if task not in aggregation or not isinstance(text, str):
            continue
        for key, value in orjson.loads(text).items():
            if key.split(",", 1)[0] in aggregation[task] and isinstance(value, (int, float)):
                sums.setdefault((task, key), []).append(float(value))
    reported = {(e.name, m.key): m.value for e in run.tasks for m in e.metrics}
    rows = []
    for (task, key), items in sorted(sums.items()):
        mean = math.fsum(items) / len(items)
        score = reported.get((task, key))
        if score is None or abs(mean - score) > TOLERANCE:
            rows.append((task, key, len(items), mean, score))
    frame = pd.DataFrame(rows, columns=["task_name", "metric", "samples", "mean", "reported"])
    return CheckOutcome(
        CHECK_SAMPLES,
        not rows,
        "WARN",
        f"the per-sample means of {len(sums)} mean-aggregated metrics equal the reported scores"
        if not rows
        else f"{len(rows)} of {len(sums)} metrics: the per-sample mean differs from the score",
        {
            "metrics_checked": len(sums),
            "failures": len(rows),
            "offending_rows": frame_markdown(frame),
            "source_file": str(run.path),
        },
    )
