"""A small clean run, shared by the integrity tests, that every check passes.

Two aggregates: `core_9mcqa:rc::olmes:full` with all nine members and its exact macro mean, and
`minerva_math::tulu` with three of its seven members. Plus a bits-per-byte task (unbounded
score) and an artifact-only task with no `num_instances`. Predictions and requests agree with
`num_instances`. Frames are built through Arrow, as they are read from the lake.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa

from evalpipe.integrity.gx_suites import frame_from_arrow
from evalpipe.results.suites import CORE_9MCQA
from evalpipe.storage.schemas import SCHEMAS

RUN_ID = "2025-11-03_posttrain/meta-llama_Llama-3.1-8B__main"
EVALUATED_AT = datetime(2025, 11, 3, 12, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
METRICS_ALL = "metrics-all.jsonl"

CORE = "core_9mcqa:rc::olmes:full"
MINERVA = "minerva_math::tulu"
CORE_MEMBERS = {
    f"{task}:rc::olmes:full": (0.41 + 0.05 * i, 3 + i % 3) for i, task in enumerate(CORE_9MCQA)
}
MINERVA_MEMBERS = {
    "minerva_math_algebra::tulu": (0.30, 4),
    "minerva_math_geometry::tulu": (0.20, 2),
    "minerva_math_prealgebra::tulu": (0.40, 3),
}
ACCURACY_TASK = "arc_easy:rc::olmes:full"
BPB_TASK = "arc_easy:rc:bpb::olmes"
ARTIFACT_ONLY_TASK = "boolq:mc::olmes"

PREDICTIONS_SCHEMA = SCHEMAS["predictions"]
REQUESTS_SCHEMA = SCHEMAS["requests"]


@dataclass(frozen=True)
class Run:
    """One run's three tables plus what the dump says independently of them."""

    task_results: pd.DataFrame
    predictions: pd.DataFrame
    requests: pd.DataFrame
    expected_task_names: frozenset[str]

    @property
    def prediction_counts(self) -> dict[str, int]:
        return self.predictions.groupby("task_name").size().to_dict()

    def with_(self, **tables: pd.DataFrame) -> Run:
        return replace(self, **tables)


def task_row(
    name: str,
    metric: str | None,
    score: float | None,
    num_instances: int | None,
    *,
    line: int | None,
    task_idx: int | None = None,
    aggregate: bool = False,
    source: str = "metrics-all",
    source_file: str = METRICS_ALL,
) -> dict[str, Any]:
    return {
        "run_id": RUN_ID,
        "task_name": name,
        "task_hash": None if source == "artifacts" else f"hash-{name}",
        "task_idx": task_idx,
        "is_aggregate": aggregate,
        "primary_metric": metric,
        "primary_score": score,
        "num_instances": num_instances,
        "evaluated_at": EVALUATED_AT if source == "metrics-all" else None,
        "source": source,
        "source_file": source_file,
        "source_line": line,
        "model_config": '{"model": "meta-llama/Llama-3.1-8B"}',
        "task_config": f'{{"task_name": "{name}", "primary_metric": "{metric}"}}',
        "compute_config": '{"batch_size": "4"}',
        "beaker_info": "{}",
        "metrics": None if score is None else f'{{"primary_score": {score}}}',
    }


def _task_rows() -> list[dict[str, Any]]:
    core_mean = math.fsum(score for score, _ in CORE_MEMBERS.values()) / len(CORE_MEMBERS)
    rows = [
        task_row(CORE, "macro", core_mean, None, line=1, aggregate=True),
        task_row(MINERVA, "macro", 0.28, None, line=2, aggregate=True),
    ]
    members = [
        *((name, "acc_per_char", score, n) for name, (score, n) in CORE_MEMBERS.items()),
        *((name, "exact_match", score, n) for name, (score, n) in MINERVA_MEMBERS.items()),
        (BPB_TASK, "bits_per_byte_corr", 0.93, 3),
    ]
    for idx, (name, metric, score, n) in enumerate(members):
        rows.append(task_row(name, metric, score, n, line=idx + 3, task_idx=idx))
    rows.append(
        task_row(
            ARTIFACT_ONLY_TASK,
            None,
            None,
            None,
            line=None,
            task_idx=len(members),
            source="artifacts",
            source_file=f"task-{len(members):03d}-{ARTIFACT_ONLY_TASK}-requests.jsonl",
        )
    )
    return rows


def _documents(task_results: pd.DataFrame) -> list[tuple[str, int]]:
    tasks = task_results.loc[task_results["num_instances"].notna()]
    return [
        (name, doc_id)
        for name, n in zip(tasks["task_name"], tasks["num_instances"], strict=True)
        for doc_id in range(int(n))
    ]


def _prediction(name: str, doc_id: int) -> dict[str, Any]:
    return {
        "run_id": RUN_ID,
        "task_name": name,
        "doc_id": doc_id,
        "native_id": f"q{doc_id}",
        "label": "A",
        "task_hash": f"hash-{name}",
        "model_hash": "model-hash",
        "metrics": '{"acc_raw": 1}',
        "model_output": '[{"sum_logits": -1.5}]',
    }


def _request(name: str, doc_id: int, idx: int) -> dict[str, Any]:
    return {
        "run_id": RUN_ID,
        "task_name": name,
        "doc_id": doc_id,
        "native_id": f"q{doc_id}",
        "label": "A",
        "request_type": "loglikelihood",
        "idx": idx,
        "doc": '{"question": "?"}',
        "request": '{"context": "Q:", "continuation": " A"}',
    }


def make_run() -> Run:
    """A fresh copy of the clean run (tests corrupt it freely)."""
    task_results = frame_from_arrow(
        pa.Table.from_pylist(_task_rows(), schema=SCHEMAS["task_results"])
    )
    documents = _documents(task_results)
    predictions = [_prediction(name, doc_id) for name, doc_id in documents]
    requests = [_request(name, doc_id, idx) for name, doc_id in documents for idx in (0, 1)]
    return Run(
        task_results=task_results,
        predictions=frame_from_arrow(pa.Table.from_pylist(predictions, schema=PREDICTIONS_SCHEMA)),
        requests=frame_from_arrow(pa.Table.from_pylist(requests, schema=REQUESTS_SCHEMA)),
        expected_task_names=frozenset(task_results["task_name"]),
    )


def set_value(frame: pd.DataFrame, task_name: str, column: str, value: Any) -> pd.DataFrame:
    """A copy of `frame` with `column` set to `value` on the rows of one task."""
    changed = frame.copy()
    changed.loc[changed["task_name"] == task_name, column] = value
    return changed
