"""The lake's table catalog: one Arrow schema per table, shared by every source.

The core tables (`runs`, `task_results`, `predictions`, ...) are declared here; a source declares
the tables only it writes with `register` (see `evalpipe.sources.olmes.schemas`). The lake, the
warehouse and the checks look schemas up here, so a table exists once, with one schema.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

JSON_TEXT_MARK = {b"evalpipe.content": b"json"}


def json_column(name: str) -> pa.Field:
    """A column of nested payloads as JSON text that parses back to the source value, key order
    included. Marked in the schema: such columns are large and unique, so the Parquet writer
    skips dictionary encoding and min/max statistics for them (they cost time and prune nothing)."""
    return pa.field(name, pa.string(), metadata=JSON_TEXT_MARK)


def _plain_columns(schema: pa.Schema) -> list[str]:
    return [field.name for field in schema if field.metadata != JSON_TEXT_MARK]


TIMESTAMP = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    # The core tables every source writes (a source adds its own with `register`).
    "runs": pa.schema(
        [
            ("run_id", pa.string()),
            ("source", pa.string()),
            ("dump", pa.string()),
            ("model", pa.string()),
            ("revision", pa.string()),
            ("model_hash", pa.string()),
            ("source_dir", pa.string()),
            ("n_tasks", pa.int32()),
            ("n_aggregates", pa.int32()),
            ("duplicates_dropped", pa.int32()),
            ("fingerprint", pa.string()),
            ("ingested_at", TIMESTAMP),
            # What the evaluation framework recorded about the run itself (lm-eval: its
            # `date`, `lm_eval_version`, `git_hash` and whole `config`); NULL where it has none.
            ("evaluated_at", TIMESTAMP),
            ("source_version", pa.string()),
            ("source_git_hash", pa.string()),
            json_column("config"),
        ]
    ),
    "task_results": pa.schema(
        [
            ("run_id", pa.string()),
            ("task_name", pa.string()),
            ("task_hash", pa.string()),
            ("task_idx", pa.int64()),
            ("is_aggregate", pa.bool_()),
            ("primary_metric", pa.string()),
            ("primary_score", pa.float64()),
            ("num_instances", pa.int64()),
            ("evaluated_at", TIMESTAMP),
            ("source", pa.string()),
            ("source_file", pa.string()),
            ("source_line", pa.int64()),
            json_column("model_config"),
            json_column("task_config"),
            json_column("compute_config"),
            json_column("beaker_info"),
            json_column("metrics"),
        ]
    ),
    "task_metrics": pa.schema(
        [
            ("run_id", pa.string()),
            ("task_name", pa.string()),
            ("metric", pa.string()),
            ("value", pa.float64()),
            # lm-eval reports each metric per filter (`acc,none`), with its standard error
            # (`acc_stderr,none`) beside it; NULL for sources without either.
            ("filter", pa.string()),
            ("stderr", pa.float64()),
        ]
    ),
    "predictions": pa.schema(
        [
            ("run_id", pa.string()),
            ("task_name", pa.string()),
            ("doc_id", pa.int64()),
            ("native_id", pa.string()),
            ("label", pa.string()),
            ("task_hash", pa.string()),
            ("model_hash", pa.string()),
            json_column("metrics"),
            json_column("model_output"),
        ]
    ),
    "task_choices": pa.schema(
        [
            ("run_id", pa.string()),
            ("task_name", pa.string()),
            ("n_choices", pa.int32()),
            ("generative", pa.bool_()),
        ]
    ),
    "run_checks": pa.schema(
        [
            ("run_id", pa.string()),
            ("asset", pa.string()),
            ("check", pa.string()),
            ("passed", pa.bool_()),
            ("severity", pa.string()),
            ("blocking", pa.bool_()),
            ("description", pa.string()),
            json_column("metadata"),
            ("checked_at", TIMESTAMP),
        ]
    ),
    "run_status": pa.schema(
        [
            ("run_id", pa.string()),
            ("status", pa.string()),
            ("status_reason", pa.string()),
            ("checked_at", TIMESTAMP),
            # The newest files' fate when it differs from what is published: a quarantined or
            # failed new version leaves the previous one in the tables.
            ("attempt_status", pa.string()),
            ("attempt_reason", pa.string()),
            ("attempt_fingerprint", pa.string()),
        ]
    ),
    "run_files": pa.schema(
        [
            ("run_id", pa.string()),
            ("name", pa.string()),
            ("task_name", pa.string()),
            ("kind", pa.string()),
            ("size", pa.int64()),
            ("mtime", TIMESTAMP),
        ]
    ),
}


def register(schemas: Mapping[str, pa.Schema]) -> None:
    """Add a source's own tables to the catalog (idempotent for the same schema)."""
    for name, schema in schemas.items():
        known = SCHEMAS.get(name)
        if known is not None and not known.equals(schema, check_metadata=True):
            raise ValueError(f"lake table {name!r} is already declared with another schema")
        SCHEMAS[name] = schema


def is_json_column(field: pa.Field) -> bool:
    return field.metadata == JSON_TEXT_MARK
