"""One lm-eval run as rows of the shared tables (`runs`, `task_results`, `task_metrics`,
`predictions`, `run_files`), shaped by `storage.schemas.SCHEMAS`.

Nested payloads are JSON text with key order kept, so `json.loads` of a column gives back what
lm-eval wrote: the whole `config` on `runs`, a task's YAML config and its results entry on
`task_results`, each document's responses and per-sample metrics on `predictions`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from evalpipe.core.inventory import RunInventory
from evalpipe.core.jsonl import iter_jsonl, json_text
from evalpipe.sources.lmeval.reader import (
    SAMPLES_FILE,
    SOURCE_NAME,
    LmevalRun,
    ResultsEntry,
    iter_sample_docs,
)
from evalpipe.storage.schemas import SCHEMAS


@dataclass
class RunTables:
    """One run's task-level tables, ready for the lake."""

    runs: pa.Table
    task_results: pa.Table
    task_metrics: pa.Table


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def num_instances(run: LmevalRun, entry: ResultsEntry) -> int | None:
    """Documents behind a row: a task's `n-samples.effective` (after `--limit`), a group's
    `sample_count` of its primary metric (the members that have it), else `sample_len`."""
    if entry.is_group:
        counts = entry.entry.get("sample_count")
        primary = entry.primary
        if isinstance(counts, dict) and primary is not None:
            key = f"{primary.metric},{primary.filter}" if primary.filter else primary.metric
            if _int(counts.get(key)) is not None:
                return counts[key]
    else:
        samples = run.section("n-samples").get(entry.name)
        if isinstance(samples, dict) and _int(samples.get("effective")) is not None:
            return samples["effective"]
    return _int(entry.entry.get("sample_len"))


def group_aggregate(run: LmevalRun, group: ResultsEntry) -> dict[str, Any] | None:
    """How a group's primary score was computed: the member tasks that have its metric, and
    whether their mean is weighted by size (`micro`) or plain (`macro`), found by recomputing
    both (lm-eval does not write `weight_by_size`; None when neither matches)."""
    primary = group.primary
    if primary is None:
        return None
    entries = {e.name: e for e in run.tasks}
    scored = []
    for leaf in run.leaves(group.name):
        entry = entries.get(leaf)
        value = (
            next(
                (
                    m.value
                    for m in entry.metrics
                    if (m.metric, m.filter) == (primary.metric, primary.filter)
                ),
                None,
            )
            if entry
            else None
        )
        size = num_instances(run, entry) if entry else None
        if value is not None and size:
            scored.append((leaf, value, size))
    averaging = None
    if scored:
        micro = sum(v * n for _, v, n in scored) / sum(n for _, _, n in scored)
        macro = sum(v for _, v, _ in scored) / len(scored)
        if abs(primary.value - micro) <= 1e-6:
            averaging = "micro"
        elif abs(primary.value - macro) <= 1e-6:
            averaging = "macro"
    return {"metric": primary.key, "members": [s[0] for s in scored], "averaging": averaging}


def task_config(run: LmevalRun, entry: ResultsEntry) -> dict[str, Any] | None:
    """A task's config as lm-eval recorded it (its `num_fewshot` and `metadata.version` are the
    results file's `n-shot` and `versions`); a group has none, so it gets its members, version
    and n-shot in the same places, and how its primary score aggregates its members."""
    if entry.is_group:
        return {
            "group": entry.name,
            "task": run.section("group_subtasks").get(entry.name),
            "num_fewshot": run.section("n-shot").get(entry.name),
            "metadata": {"version": run.section("versions").get(entry.name)},
            "aggregate": group_aggregate(run, entry),
        }
    config = run.section("configs").get(entry.name)
    return config if isinstance(config, dict) else None


def task_result_row(run_id: str, run: LmevalRun, idx: int, entry: ResultsEntry) -> dict:
    primary = entry.primary
    return {
        "run_id": run_id,
        "task_name": entry.name,
        "task_hash": run.section("task_hashes").get(entry.name),
        "task_idx": idx,
        "is_aggregate": entry.is_group,
        "primary_metric": primary.key if primary else None,
        "primary_score": primary.value if primary else None,
        "num_instances": num_instances(run, entry),
        "evaluated_at": run.evaluated_at,
        "source": SOURCE_NAME,
        "source_file": run.path.name,
        "source_line": None,
        "model_config": json_text(run.config or None),
        "task_config": json_text(task_config(run, entry)),
        "metrics": json_text(entry.entry),
    }


def task_metric_rows(run_id: str, entry: ResultsEntry) -> list[dict]:
    return [
        {
            "run_id": run_id,
            "task_name": entry.name,
            "metric": m.metric,
            "value": m.value,
            "filter": m.filter,
            "stderr": m.stderr,
        }
        for m in entry.metrics
    ]


def build_run_tables(
    run_id: str, run: LmevalRun, fingerprint: str | None, now: datetime | None = None
) -> RunTables:
    model, revision, model_hash = run.model_identity()
    results = [task_result_row(run_id, run, i, e) for i, e in enumerate(run.entries)]
    metrics = [row for e in run.entries for row in task_metric_rows(run_id, e)]
    run_row = {
        "run_id": run_id,
        "source": SOURCE_NAME,
        "dump": run_id.rsplit("/", 1)[0] if "/" in run_id else None,
        "model": model,
        "revision": revision,
        "model_hash": model_hash,
        "source_dir": str(run.path.parent),
        "n_tasks": len(run.tasks),
        "n_aggregates": len(run.groups),
        "duplicates_dropped": 0,
        "fingerprint": fingerprint,
        "ingested_at": now or datetime.now(timezone.utc),
        "evaluated_at": run.evaluated_at,
        "source_version": _text(run.data.get("lm_eval_version")),
        "source_git_hash": _text(run.data.get("git_hash")),
        "config": json_text(run.config or None),
    }
    return RunTables(
        runs=pa.Table.from_pylist([run_row], SCHEMAS["runs"]),
        task_results=pa.Table.from_pylist(results, SCHEMAS["task_results"]),
        task_metrics=pa.Table.from_pylist(metrics, SCHEMAS["task_metrics"]),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def prediction_batches(
    run_id: str, run: LmevalRun, model_hash: str | None
) -> Iterator[tuple[str, pa.Table]]:
    """Each task's `predictions` rows, from its samples file, one table per task."""
    hashes = run.section("task_hashes")
    for task, path in sorted(run.samples.items()):
        rows = [
            {
                "run_id": run_id,
                "task_name": task,
                "doc_id": doc.doc_id,
                "native_id": doc.native_id,
                "label": doc.target,
                "task_hash": hashes.get(task),
                "model_hash": model_hash,
                "metrics": json_text(doc.metrics),
                "model_output": json_text({"resps": doc.resps, "filtered_resps": doc.filtered}),
            }
            for doc in iter_sample_docs(path)
        ]
        yield task, pa.Table.from_pylist(rows, SCHEMAS["predictions"])


def task_choices_table(run_id: str, run: LmevalRun) -> pa.Table:
    """Answer choices per task, for chance levels: a `generate_until` task has none; a
    `multiple_choice` task has one loglikelihood request per choice, counted on the first line
    of its samples (so only with `--log_samples`); other kinds are left out."""
    rows = []
    for entry in run.tasks:
        config = run.section("configs").get(entry.name)
        kind = config.get("output_type") if isinstance(config, dict) else None
        if kind == "generate_until":
            rows.append(
                {"run_id": run_id, "task_name": entry.name, "n_choices": 0, "generative": True}
            )
        elif kind == "multiple_choice" and entry.name in run.samples:
            first = next(iter_jsonl(run.samples[entry.name]), None)
            requests = first[2].get("arguments") if first and isinstance(first[2], dict) else None
            if isinstance(requests, dict) and requests:
                rows.append(
                    {
                        "run_id": run_id,
                        "task_name": entry.name,
                        "n_choices": len(requests),
                        "generative": False,
                    }
                )
    return pa.Table.from_pylist(rows, SCHEMAS["task_choices"])


def run_files_table(run_id: str, inventory: RunInventory) -> pa.Table:
    """The run's files: the results file, and each task's samples file."""
    rows = []
    for f in inventory.files:
        sample = SAMPLES_FILE.match(f.name)
        rows.append(
            {
                "run_id": run_id,
                "name": f.name,
                "task_name": sample["task"] if sample else None,
                "kind": "samples" if sample else "results",
                "size": f.size,
                "mtime": datetime.fromtimestamp(f.mtime_ns / 1e9, tz=timezone.utc),
            }
        )
    return pa.Table.from_pylist(rows, SCHEMAS["run_files"])
