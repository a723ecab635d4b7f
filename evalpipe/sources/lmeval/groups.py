"""lm-eval groups as aggregate suites, so `evalpipe significance` can test a group: its
members and averaging are recorded in the group's `task_config` at ingest (see
`tables.group_aggregate`)."""

from __future__ import annotations

import json

import pandas as pd

from evalpipe.results.suites import Suite


def group_suites(task_rows: pd.DataFrame, run_id: str) -> dict[str, Suite]:
    """The suites of one run's lm-eval groups (`task_rows`: run_id, task_name, is_aggregate,
    primary_metric, task_config). A group is a suite only when its averaging is known and every
    member's primary metric is the group's metric: otherwise the members' per-document values
    are not what the group averages, and no paired test of it would be right."""
    rows = task_rows[task_rows["run_id"] == run_id]
    primary = dict(zip(rows["task_name"], rows["primary_metric"], strict=True))
    suites = {}
    for name, config in zip(
        rows.loc[rows["is_aggregate"].astype(bool), "task_name"],
        rows.loc[rows["is_aggregate"].astype(bool), "task_config"],
        strict=True,
    ):
        parsed = json.loads(config) if isinstance(config, str) else None
        aggregate = parsed.get("aggregate") if isinstance(parsed, dict) else None
        if not isinstance(aggregate, dict) or aggregate.get("averaging") not in ("micro", "macro"):
            continue
        members = aggregate.get("members") or []
        if members and all(primary.get(m) == aggregate.get("metric") for m in members):
            suites[name] = Suite(name, tuple(members), aggregate["averaging"])
    return suites
