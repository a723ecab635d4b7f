"""Metadata a person wants in the UI: row counts, column schemas, markdown previews."""

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa

from evalpipe.core.output import frame_markdown


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


def metadata_value(value: Any) -> Any:
    """A plain value as Dagster metadata: frames as markdown, paths as paths, schemas as column
    schemas, markdown text as markdown, lists and dicts as JSON."""
    if isinstance(value, pd.DataFrame):
        return markdown_preview(value, max_rows=50)
    if isinstance(value, Path):
        return dg.MetadataValue.path(str(value))
    if isinstance(value, pa.Schema):
        return column_schema(value)
    if isinstance(value, bool):
        return dg.MetadataValue.text(str(value))
    if isinstance(value, str) and value.startswith("|"):
        return dg.MetadataValue.md(value)
    if isinstance(value, int | float | str):
        return value
    if isinstance(value, dict | list):
        return dg.MetadataValue.json(value)
    return dg.MetadataValue.text(str(value))


def to_metadata(values: dict[str, Any]) -> dict[str, Any]:
    return {key: metadata_value(value) for key, value in values.items()}
