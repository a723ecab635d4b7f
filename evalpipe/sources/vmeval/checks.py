"""A data root's per-run checks: the validation itself (errors block, warnings inform), and
invariants of the tables as staged, judged before they are published."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pyarrow as pa

from evalpipe.core.output import frame_markdown
from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.results.status import RunCheck
from evalpipe.sources.vmeval.issues import Issue
from evalpipe.sources.vmeval.tables import DataRootTables

PER_RUN_CHECKS = (
    (
        "vm_questions",
        "manifest_has_no_errors",
        True,
        "`evalpipe validate` finds no error in the data root (manifest, question folders, "
        "images, prompts, outputs, evaluation scores); see vm_manifest_issues.",
    ),
    (
        "vm_questions",
        "manifest_warnings",
        False,
        "Informational findings of the validation (orphan folders or outputs, a missing "
        "manifest, superseded runs, incomplete run folders).",
    ),
    (
        "vm_outputs",
        "one_latest_run_per_task",
        True,
        "Exactly one run of each (experiment, model, task) is marked is_latest.",
    ),
    (
        "vm_evaluations",
        "scores_in_range",
        True,
        "Every score is null or in 0-5, success is exactly score >= 4 (null when not scored), "
        "and only skipped or failed evaluations lack a score.",
    ),
)


def _issues_outcome(name: str, severity: str, issues: list[Issue]) -> CheckOutcome:
    counts = Counter(i.code for i in issues)
    summary = ", ".join(f"{code}: {n}" for code, n in sorted(counts.items()))
    frame = pd.DataFrame(
        [(i.path, i.code, i.message) for i in issues], columns=["path", "code", "message"]
    )
    return CheckOutcome(
        name,
        not issues,
        severity,
        f"{len(issues)} findings ({summary})" if issues else "none",
        {"findings": len(issues), **counts, "offending_rows": frame_markdown(frame, 20)},
    )


def evaluate(tables: DataRootTables, issues: list[Issue]) -> list[RunCheck]:
    errors = [i for i in issues if i.severity == "error"]
    warnings = [i for i in issues if i.severity == "warning"]
    return [
        RunCheck("vm_questions", _issues_outcome("manifest_has_no_errors", "ERROR", errors)),
        RunCheck("vm_questions", _issues_outcome("manifest_warnings", "WARN", warnings)),
        RunCheck("vm_outputs", _latest_outcome(tables.vm_outputs)),
        RunCheck("vm_evaluations", _scores_outcome(tables.vm_evaluations)),
    ]


def _latest_outcome(outputs: pa.Table) -> CheckOutcome:
    frame = outputs.select(
        ["experiment", "model", "domain", "question_id", "is_latest"]
    ).to_pandas()
    keys = ["experiment", "model", "domain", "question_id"]
    latest = frame.groupby(keys, dropna=False)["is_latest"].sum()
    bad = latest[latest != 1].reset_index()
    return CheckOutcome(
        "one_latest_run_per_task",
        bad.empty,
        "ERROR",
        f"{len(bad)} tasks without exactly one latest run" if len(bad) else "ok",
        {"offending_rows": frame_markdown(bad, 20)},
    )


def _scores_outcome(evaluations: pa.Table) -> CheckOutcome:
    frame = evaluations.select(["source_file", "score", "status", "success"]).to_pandas()
    score = frame["score"]
    out_of_range = score.notna() & ~score.between(0, 5)
    expected = score.map(lambda s: None if pd.isna(s) else bool(s >= 4))
    wrong_success = [
        (e is None) != pd.isna(s) or (e is not None and bool(s) != e)
        for e, s in zip(expected, frame["success"], strict=True)
    ]
    unscored = score.isna() & ~frame["status"].isin(["skipped", "failed"])
    bad = frame[out_of_range | pd.Series(wrong_success, index=frame.index) | unscored]
    return CheckOutcome(
        "scores_in_range",
        bad.empty,
        "ERROR",
        f"{len(bad)} evaluation rows break the score rules" if len(bad) else "ok",
        {"offending_rows": frame_markdown(bad, 20)},
    )
