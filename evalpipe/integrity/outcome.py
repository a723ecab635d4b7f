"""What one integrity check found, in plain values the Dagster layer turns into a check result.

Kept free of Dagster (and of GX) so the checks are testable as functions and the severity rule
lives in one place: ERROR findings block downstream assets, WARN findings only inform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["ERROR", "WARN"]


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
