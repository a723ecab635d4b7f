"""Tables only VMEvalKit data roots have, partitioned per data root like every run table."""

import pyarrow as pa

from evalpipe.storage.schemas import TIMESTAMP, json_column, register

VMEVAL_SCHEMAS: dict[str, pa.Schema] = {
    "vm_questions": pa.schema(
        [
            ("dataset", pa.string()),
            ("question_id", pa.string()),
            ("domain", pa.string()),
            ("task_category", pa.string()),
            ("difficulty", pa.string()),
            ("prompt", pa.string()),
            ("first_image_path", pa.string()),
            ("final_image_path", pa.string()),
            ("has_final_frame", pa.bool_()),
            ("created_at", TIMESTAMP),
            json_column("payload"),
        ]
    ),
    "vm_outputs": pa.schema(
        [
            ("dataset", pa.string()),
            ("experiment", pa.string()),
            ("model", pa.string()),
            ("domain", pa.string()),
            ("question_id", pa.string()),
            ("run_id", pa.string()),
            ("status", pa.string()),
            ("video_path", pa.string()),
            ("duration_seconds", pa.float64()),
            ("started_at", TIMESTAMP),
            ("is_latest", pa.bool_()),
            ("source_dir", pa.string()),
            json_column("metadata"),
        ]
    ),
    "vm_evaluations": pa.schema(
        [
            ("dataset", pa.string()),
            ("evaluator", pa.string()),
            ("evaluator_name", pa.string()),
            ("experiment", pa.string()),
            ("model", pa.string()),
            ("domain", pa.string()),
            ("question_id", pa.string()),
            ("score", pa.float64()),
            ("status", pa.string()),
            ("success", pa.bool_()),
            ("annotator", pa.string()),
            ("evaluated_at", TIMESTAMP),
            ("source_file", pa.string()),
            json_column("result"),
        ]
    ),
    "vm_manifest_issues": pa.schema(
        [
            ("dataset", pa.string()),
            ("path", pa.string()),
            ("code", pa.string()),
            ("severity", pa.string()),
            ("message", pa.string()),
        ]
    ),
}

register(VMEVAL_SCHEMAS)
