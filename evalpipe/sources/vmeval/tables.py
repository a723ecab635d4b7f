"""One data root's tables from what the reader found: only valid rows, every issue."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

from evalpipe.sources.vmeval.reader import DataRoot
from evalpipe.sources.vmeval.schemas import VMEVAL_SCHEMAS


@dataclass(frozen=True)
class DataRootTables:
    vm_questions: pa.Table
    vm_outputs: pa.Table
    vm_evaluations: pa.Table
    vm_manifest_issues: pa.Table

    def items(self) -> list[tuple[str, pa.Table]]:
        return [(name, getattr(self, name)) for name in VMEVAL_SCHEMAS]


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def build_tables(data: DataRoot) -> DataRootTables:
    dataset = data.dataset
    questions = [
        {
            "dataset": dataset,
            "question_id": q.id,
            "domain": q.domain,
            "task_category": q.task_category,
            "difficulty": q.difficulty,
            "prompt": q.prompt,
            "first_image_path": q.first_image_path,
            "final_image_path": q.final_image_path,
            "has_final_frame": q.has_final_frame,
            "created_at": q.created_at,
            "payload": _json(q.payload),
        }
        for q in data.questions
        if q.valid
    ]
    outputs = [
        {
            "dataset": dataset,
            "experiment": o.experiment,
            "model": o.model,
            "domain": o.domain,
            "question_id": o.question_id,
            "run_id": o.run_id,
            "status": o.status,
            "video_path": o.video_path,
            "duration_seconds": o.duration_seconds,
            "started_at": o.started_at,
            "is_latest": o.is_latest,
            "source_dir": o.path,
            "metadata": _json(o.metadata),
        }
        for o in data.outputs
        if o.valid
    ]
    evaluations = [
        {
            "dataset": dataset,
            "evaluator": e.evaluator,
            "evaluator_name": e.evaluator_name,
            "experiment": e.experiment,
            "model": e.model,
            "domain": e.domain,
            "question_id": e.question_id,
            "score": e.score,
            "status": e.status,
            "success": e.success,
            "annotator": e.annotator,
            "evaluated_at": e.evaluated_at,
            "source_file": e.path,
            "result": _json(e.result),
        }
        for e in data.evaluations
        if e.valid
    ]
    issues = [i.as_dict() for i in data.log.issues]
    return DataRootTables(
        *(
            pa.Table.from_pylist(rows, VMEVAL_SCHEMAS[name])
            for name, rows in zip(
                VMEVAL_SCHEMAS, (questions, outputs, evaluations, issues), strict=True
            )
        )
    )
