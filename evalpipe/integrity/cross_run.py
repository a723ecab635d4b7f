"""Checks on what aggregates across runs: the leaderboards and the warehouse."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from evalpipe.core.output import frame_markdown
from evalpipe.integrity.outcome import CheckOutcome

CHECK_LEADERBOARD_RUNS = "only_healthy_runs_ranked"
CHECK_WAREHOUSE_VIEWS = "warehouse_views_match_lake"


def leaderboard_runs_healthy(
    board: pd.DataFrame, runs: pd.DataFrame, board_name: str
) -> CheckOutcome:
    """ERROR when a leaderboard row comes from a run whose status is not `ok` (quarantined or
    never checked): such a run must never be ranked."""
    status = runs.set_index("run_id")["status"] if len(runs) else pd.Series(dtype=str)
    rows = board.assign(status=board["run_id"].map(status).fillna("unknown"))
    offending = rows.loc[rows["status"] != "ok", ["task_name", "model", "run_id", "status"]]
    return CheckOutcome(
        check=CHECK_LEADERBOARD_RUNS,
        passed=offending.empty,
        severity="ERROR",
        description=(
            f"{len(offending)} rows of {board_name} come from runs that are not ok"
            if len(offending)
            else f"all {len(rows)} rows of {board_name} come from ok runs"
        ),
        metadata={
            "rows_checked": len(rows),
            "failures": len(offending),
            "offending_rows": frame_markdown(offending),
        },
    )


def warehouse_matches_lake(
    view_rows: Mapping[str, int], lake_rows: Mapping[str, int]
) -> CheckOutcome:
    """WARN when a warehouse view and its lake table disagree on rows: the warehouse was built
    before a table first appeared, or a view points at files that moved. Rebuild it."""
    differing = [
        {"table": t, "warehouse_rows": view_rows.get(t), "lake_rows": lake_rows.get(t)}
        for t in sorted(view_rows.keys() | lake_rows.keys())
        if view_rows.get(t) != lake_rows.get(t)
    ]
    return CheckOutcome(
        check=CHECK_WAREHOUSE_VIEWS,
        passed=not differing,
        severity="WARN",
        description=(
            f"{len(differing)} warehouse views disagree with the lake"
            if differing
            else f"all {len(view_rows)} warehouse views match the lake"
        ),
        metadata={
            "tables_checked": len(view_rows),
            "failures": len(differing),
            "offending_rows": frame_markdown(pd.DataFrame(differing)),
        },
    )
