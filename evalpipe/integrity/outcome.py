"""What one integrity check found, in plain values the Dagster layer turns into a check result.

Kept free of Dagster (and of GX) so the checks are testable as functions and the severity rule
lives in one place: ERROR findings block downstream assets, WARN findings only inform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

Severity = Literal["ERROR", "WARN"]

NO_ROWS = "_no rows_"


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict. `metadata` holds JSON-able values only (ints, floats, strings);
    the first offending rows are a markdown table under `offending_rows`."""

    check: str
    passed: bool
    severity: Severity
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        """ERROR checks block what depends on the asset when they fail; a WARN never does."""
        return self.severity == "ERROR"


def markdown_rows(frame: pd.DataFrame, limit: int = 5, max_chars: int = 80) -> str:
    """The first `limit` rows as a markdown table, long cells cut and `|` escaped so it renders."""
    if frame.empty:
        return NO_ROWS
    shown = frame.head(limit).astype(object).map(lambda v: _cell(v, max_chars))
    text = shown.to_markdown(index=False)
    if len(frame) > limit:
        text += f"\n\n_{len(frame) - limit} more rows_"
    return text


def _cell(value: Any, max_chars: int) -> Any:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "null"
    if isinstance(value, float):
        return value
    text = str(value)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text.replace("|", "\\|").replace("\n", " ")
