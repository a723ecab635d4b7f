"""Tables only OLMES dumps have: every request sent to the model, and the recorded prompts."""

import pyarrow as pa

from evalpipe.storage.schemas import json_column, register

OLMES_SCHEMAS: dict[str, pa.Schema] = {
    "requests": pa.schema(
        [
            ("run_id", pa.string()),
            ("task_name", pa.string()),
            ("doc_id", pa.int64()),
            ("native_id", pa.string()),
            ("label", pa.string()),
            ("request_type", pa.string()),
            ("idx", pa.int64()),
            json_column("doc"),
            json_column("request"),
        ]
    ),
    "recorded_inputs": pa.schema(
        [
            ("run_id", pa.string()),
            ("task_name", pa.string()),
            ("doc_id", pa.int64()),
            ("native_id", pa.string()),
            ("label", pa.string()),
            json_column("doc"),
            json_column("requests"),
        ]
    ),
}

register(OLMES_SCHEMAS)
