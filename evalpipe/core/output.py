"""Rendering query results for people and programs: one implementation for every CLI command."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd

FORMATS = ("table", "markdown", "csv", "json")
NO_ROWS = "_no rows_"


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT


def _cell(value: Any) -> str:
    if _missing(value):
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Decimal):  # DuckDB's DECIMAL (SUMMARIZE, sums of integers)
        return float(value)
    return value


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table") -> str:
    """Render rows as an aligned text table, GitHub markdown, CSV, or a JSON list of objects."""
    if fmt == "json":
        return json.dumps(
            [{c: _json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows],
            ensure_ascii=False,
            indent=2,
        )
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_json_value(v) for v in row] for row in rows])
        return buffer.getvalue().rstrip("\n")
    cells = [[_cell(v) for v in row] for row in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += [
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |"
            for row in cells
        ]
        return "\n".join(lines) + ("" if rows else f"\n\n{NO_ROWS}")
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines if rows else [*lines, "(no rows)"])


def frame_markdown(frame: pd.DataFrame, limit: int = 5, max_chars: int | None = 80) -> str:
    """The first `limit` rows of a frame as a markdown table for the UI: missing values read
    `null`, numbers keep 6 significant digits (a 2e-06 difference must stay visible), long
    cells are cut, and a footer says how many rows were left out."""
    if frame.empty:
        return NO_ROWS

    def clip(value: Any) -> Any:
        if _missing(value) or (isinstance(value, float) and math.isnan(value)):
            return "null"
        if isinstance(value, float):
            return f"{value:.6g}"
        if max_chars is None:
            return value
        text = str(value)
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    rows = [[clip(v) for v in row] for row in frame.head(limit).itertuples(index=False)]
    text = render([str(c) for c in frame.columns], rows, "markdown")
    if len(frame) > limit:
        text += f"\n\n_{len(frame) - limit} more rows_"
    return text
