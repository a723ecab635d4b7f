"""Turning a domain `CheckOutcome` into what Dagster records, in one place."""

from typing import Any

import dagster as dg

from evalpipe.defs.metadata import to_metadata
from evalpipe.integrity.outcome import CheckOutcome

SEVERITY = {True: dg.AssetCheckSeverity.ERROR, False: dg.AssetCheckSeverity.WARN}


def _fields(outcome: CheckOutcome) -> dict[str, Any]:
    return {
        "check_name": outcome.check,
        "passed": outcome.passed,
        "severity": SEVERITY[outcome.blocking],
        "description": outcome.description,
        "metadata": to_metadata(outcome.metadata),
    }


def check_result(asset: dg.AssetKey | str, outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=asset, **_fields(outcome))


def check_evaluation(
    asset: dg.AssetKey, outcome: CheckOutcome, partition: str
) -> dg.AssetCheckEvaluation:
    """A check result for one partition, logged from a step that covers many."""
    return dg.AssetCheckEvaluation(
        asset_key=asset, blocking=outcome.blocking, partition=partition, **_fields(outcome)
    )
