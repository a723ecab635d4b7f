"""Metadata a person wants in the UI: row counts, column schemas, markdown previews."""

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa

from evalpipe.output import frame_markdown


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


def table_metadata(table: pa.Table, path: Path | None = None) -> dict[str, Any]:
    """Row count and column schema of a table just written (plus its file)."""
    metadata: dict[str, Any] = {
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": column_schema(table.schema),
    }
    if path is not None:
        metadata["path"] = dg.MetadataValue.path(str(path))
    return metadata


def markdown_preview(frame: pd.DataFrame, max_rows: int = 20) -> dg.MarkdownMetadataValue:
    """The first rows as a markdown table (an empty frame says so)."""
    return dg.MetadataValue.md(frame_markdown(frame, limit=max_rows, max_chars=None))
