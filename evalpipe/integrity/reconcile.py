"""Reconciliation checks: do one run's tables agree with their sources and with each other?

Plain pandas, no GX: each check compares two independently computed numbers (rows vs the
records scanned from the dump, predictions rows vs `num_instances`, an aggregate's score vs the
mean of its members) and names the rows where they differ.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evalpipe.core.output import frame_markdown
from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.results.suites import Suite

CHECK_TASK_ROWS = "task_rows_match_source"
CHECK_PREDICTION_COUNTS = "predictions_match_num_instances"
CHECK_AGGREGATES = "aggregates_match_members"
CHECK_AGGREGATE_MEMBERS = "aggregate_members_present"
CHECK_SOURCE_CONFLICTS = "no_source_conflicts"

AVERAGINGS = ("macro", "micro")
MEMBERS_SHOWN = 5
MISMATCH_COLUMNS = (
    "aggregate",
    "averaging",
    "expected",
    "actual",
    "difference",
    "members",
    "source_file",
)


def reconcile_task_rows(
    task_results: pd.DataFrame, expected_task_names: Collection[str], source_file: str
) -> CheckOutcome:
    """ERROR unless `task_results` has exactly one row per expected task (the dump's unique
    records plus its artifact-only tasks), computed from the source files independently."""
    names = task_results["task_name"]
    counts = Counter(n for n in names if isinstance(n, str))
    expected = set(expected_task_names)
    missing = sorted(expected - counts.keys())
    extra = sorted(counts.keys() - expected)
    duplicated = {n: c for n, c in sorted(counts.items()) if c > 1}
    unnamed = len(names) - sum(counts.values())
    problems = [
        *((n, "in source, not in task_results") for n in missing),
        *((n, "in task_results, not in source") for n in extra),
        *((n, f"{c} rows") for n, c in duplicated.items()),
        *([("null", f"{unnamed} rows without task_name")] if unnamed else []),
    ]
    passed = not problems
    description = (
        f"{len(names)} task_results rows match the {len(expected)} tasks of {source_file}"
        if passed
        else f"task_results has {len(names)} rows for {len(expected)} source tasks: "
        f"{len(missing)} missing, {len(extra)} extra, {len(duplicated)} duplicated, "
        f"{unnamed} unnamed"
    )
    return CheckOutcome(
        CHECK_TASK_ROWS,
        passed,
        "ERROR",
        description,
        {
            "rows_checked": len(names),
            "expected_tasks": len(expected),
            "missing_tasks": len(missing),
            "extra_tasks": len(extra),
            "duplicated_tasks": len(duplicated),
            "rows_without_task_name": unnamed,
            "failures": len(problems),
            "offending_rows": frame_markdown(
                pd.DataFrame(problems, columns=["task_name", "problem"])
            ),
            "source_file": source_file,
        },
    )


def reconcile_prediction_counts(
    task_results: pd.DataFrame, prediction_counts: Mapping[str, int]
) -> CheckOutcome:
    """ERROR unless every task has as many predictions rows as its `num_instances`.

    A task with no predictions counts as 0 rows; predictions for a task `task_results` does not
    list are offenders too. Tasks without `num_instances` (artifact-only tasks with nothing to
    count) are skipped and counted.
    """
    tasks = task_results.loc[~_aggregate_mask(task_results)]
    known = set(tasks["task_name"].dropna())
    offenders: list[dict[str, Any]] = []
    skipped = 0
    for name, expected, source in zip(
        tasks["task_name"], tasks["num_instances"], _files(tasks), strict=True
    ):
        if pd.isna(expected):
            skipped += 1
            continue
        rows = int(prediction_counts.get(name, 0))
        if rows != int(expected):
            offenders.append(_count_row(name, int(expected), rows, source))
    for name in sorted(set(prediction_counts) - known):
        if prediction_counts[name]:
            offenders.append(_count_row(name, None, int(prediction_counts[name]), None))
    checked = len(tasks) - skipped
    description = (
        f"predictions rows equal num_instances for all {checked} tasks"
        if not offenders
        else f"{len(offenders)} of {checked} tasks have predictions rows ≠ num_instances: "
        + ", ".join(o["task_name"] for o in offenders[:MEMBERS_SHOWN])
        + (" …" if len(offenders) > MEMBERS_SHOWN else "")
    )
    frame = pd.DataFrame(
        offenders,
        columns=["task_name", "num_instances", "predictions_rows", "difference", "source_file"],
    )
    metadata: dict[str, Any] = {
        "tasks_checked": checked,
        "skipped_without_num_instances": skipped,
        "predictions_rows": int(sum(prediction_counts.values())),
        "failures": len(offenders),
        "offending_rows": frame_markdown(frame),
    }
    files = sorted({o["source_file"] for o in offenders if o["source_file"]})
    if files:
        metadata["source_file"] = ", ".join(files)
    return CheckOutcome(CHECK_PREDICTION_COUNTS, not offenders, "ERROR", description, metadata)


def _count_row(name: str, expected: int | None, rows: int, source: str | None) -> dict[str, Any]:
    difference = None if expected is None else rows - expected
    return {
        "task_name": name,
        "num_instances": expected,
        "predictions_rows": rows,
        "difference": difference,
        "source_file": source,
    }


@dataclass(frozen=True)
class _Aggregate:
    """One aggregate row set against its suite's members."""

    name: str
    averaging: str
    actual: float | None
    members: tuple[str, ...]
    missing: tuple[str, ...]
    mean: float | None
    """Mean of the usable members: the expected score when none is missing, else partial."""
    source_file: str | None

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def present(self) -> str:
        return f"{len(self.members) - len(self.missing)}/{len(self.members)}"

    @property
    def difference(self) -> float | None:
        if self.actual is None or self.mean is None:
            return None
        return self.actual - self.mean


def reconcile_aggregates(
    task_results: pd.DataFrame, suites: Mapping[str, Suite], tolerance: float = 1e-6
) -> tuple[CheckOutcome, CheckOutcome]:
    """Aggregates against the mean of their members, as two outcomes:

    - `aggregates_match_members` (ERROR): an aggregate whose members are all present must equal
      their macro mean, or their micro mean weighted by `num_instances`, within `tolerance`.
      The averaging is the aggregate's own `primary_metric` when it is `macro`/`micro`, else its
      suite's. Aggregates missing from the registry are listed, not failed.
    - `aggregate_members_present` (WARN): aggregates that cannot be checked because members are
      absent (or have no score, or no `num_instances` for a micro mean), with the partial mean.
    """
    aggregates = task_results.loc[_aggregate_mask(task_results)]
    members = _member_table(task_results)
    checked: list[_Aggregate] = []
    unknown: list[str] = []
    for _, row in aggregates.iterrows():
        suite = suites.get(row["task_name"])
        if suite is None:
            unknown.append(str(row["task_name"]))
            continue
        checked.append(_reconcile_one(row, suite, members))
    return (
        _agreement_outcome(checked, unknown, tolerance),
        _presence_outcome(checked, unknown),
    )


def _aggregate_mask(task_results: pd.DataFrame) -> pd.Series:
    return task_results["is_aggregate"].map(lambda v: isinstance(v, (bool, np.bool_)) and bool(v))


def _files(frame: pd.DataFrame) -> list[str | None]:
    if "source_file" not in frame.columns:
        return [None] * len(frame)
    return [_file(f) for f in frame["source_file"]]


def _file(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _member_table(task_results: pd.DataFrame) -> pd.DataFrame:
    """Non-aggregate tasks by name (first row of a duplicated name): score and instances."""
    tasks = task_results.loc[~_aggregate_mask(task_results)]
    return tasks.drop_duplicates("task_name").set_index("task_name")[
        ["primary_score", "num_instances"]
    ]


def _reconcile_one(row: pd.Series, suite: Suite, members: pd.DataFrame) -> _Aggregate:
    averaging = row["primary_metric"] if row["primary_metric"] in AVERAGINGS else suite.averaging
    needs_weight = averaging == "micro"
    usable: list[tuple[float, float]] = []
    missing: list[str] = []
    for name in suite.members:
        score, weight = _member_values(members, name)
        if score is None or (needs_weight and not weight):
            missing.append(name)
        else:
            usable.append((score, weight or 0.0))
    return _Aggregate(
        name=str(row["task_name"]),
        averaging=averaging,
        actual=_number(row["primary_score"]),
        members=suite.members,
        missing=tuple(missing),
        mean=_mean(usable, averaging),
        source_file=_file(row.get("source_file")),
    )


def _member_values(members: pd.DataFrame, name: str) -> tuple[float | None, float | None]:
    if name not in members.index:
        return None, None
    return _number(members.at[name, "primary_score"]), _number(members.at[name, "num_instances"])


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, (bool, np.bool_, str)) or pd.isna(value):
        return None
    return float(value)


def _mean(values: Sequence[tuple[float, float]], averaging: str) -> float | None:
    """Macro: plain mean of scores. Micro: mean weighted by each member's instances."""
    if not values:
        return None
    if averaging == "micro":
        total = math.fsum(w for _, w in values)
        return math.fsum(s * w for s, w in values) / total if total else None
    return math.fsum(s for s, _ in values) / len(values)


def _agreement_outcome(
    checked: list[_Aggregate], unknown: list[str], tolerance: float
) -> CheckOutcome:
    complete = [a for a in checked if a.complete]
    wrong = [a for a in complete if a.difference is None or abs(a.difference) > tolerance]
    frame = pd.DataFrame(
        [
            (a.name, a.averaging, a.mean, a.actual, a.difference, len(a.members), a.source_file)
            for a in wrong
        ],
        columns=list(MISMATCH_COLUMNS),
    )
    description = (
        f"all {len(complete)} aggregates with every member present equal their members' mean"
        if not wrong
        else f"{len(wrong)} of {len(complete)} aggregates differ from their members' mean by "
        f"more than {tolerance:g}: " + ", ".join(a.name for a in wrong)
    )
    metadata: dict[str, Any] = {
        "aggregates_checked": len(complete),
        "aggregates_incomplete": len(checked) - len(complete),
        "unknown_suites": ", ".join(unknown),
        "unknown_suite_count": len(unknown),
        "tolerance": tolerance,
        "failures": len(wrong),
        "offending_rows": frame_markdown(frame),
    }
    differences = [abs(a.difference) for a in wrong if a.difference is not None]
    if differences:
        metadata["max_abs_difference"] = max(differences)
    _add_source_files(metadata, wrong)
    return CheckOutcome(CHECK_AGGREGATES, not wrong, "ERROR", description, metadata)


def _presence_outcome(checked: list[_Aggregate], unknown: list[str]) -> CheckOutcome:
    incomplete = [a for a in checked if not a.complete]
    frame = pd.DataFrame(
        [(a.name, a.present, _first_names(a.missing), a.mean, a.actual) for a in incomplete],
        columns=["aggregate", "present", "missing", "partial_mean", "actual"],
    )
    description = (
        f"all {len(checked)} known aggregates have every member present"
        if not incomplete
        else f"{len(incomplete)} aggregates have missing members: "
        + "; ".join(f"{a.name} lacks {_first_names(a.missing)}" for a in incomplete)
    )
    metadata: dict[str, Any] = {
        "aggregates_checked": len(checked),
        "aggregates_incomplete": len(incomplete),
        "missing_members": "\n".join(f"{a.name}: {', '.join(a.missing)}" for a in incomplete),
        "unknown_suites": ", ".join(unknown),
        "failures": len(incomplete),
        "offending_rows": frame_markdown(frame, max_chars=160),
    }
    _add_source_files(metadata, incomplete)
    return CheckOutcome(CHECK_AGGREGATE_MEMBERS, not incomplete, "WARN", description, metadata)


def _first_names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MEMBERS_SHOWN])
    return shown + (f" (+{len(names) - MEMBERS_SHOWN} more)" if len(names) > MEMBERS_SHOWN else "")


def _add_source_files(metadata: dict[str, Any], aggregates: list[_Aggregate]) -> None:
    files = sorted({a.source_file for a in aggregates if a.source_file})
    if files:
        metadata["source_file"] = ", ".join(files)


def soft_findings(findings: Sequence[tuple[str, str, str]]) -> CheckOutcome:
    """WARN summary of the reader's soft findings `(kind, file, message)`: conflicting records
    resolved by date, per-task files that differ from `metrics-all.jsonl`. Passes when none."""
    frame = pd.DataFrame(list(findings), columns=["kind", "file", "message"])
    kinds = Counter(frame["kind"])
    description = (
        "no conflicting or diverging source records"
        if frame.empty
        else f"{len(frame)} source findings: "
        + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    )
    metadata: dict[str, Any] = {
        "findings": len(frame),
        "kinds": ", ".join(f"{kind}: {count}" for kind, count in sorted(kinds.items())),
        "failures": len(frame),
        "offending_rows": frame_markdown(frame, max_chars=200),
    }
    if not frame.empty:
        metadata["source_file"] = ", ".join(sorted(set(frame["file"])))
    return CheckOutcome(CHECK_SOURCE_CONFLICTS, frame.empty, "WARN", description, metadata)
