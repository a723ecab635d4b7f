"""`evalpipe checks`: the latest result of every check, per run and across runs."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from evalpipe.core.config import load_settings
from evalpipe.core.output import render
from evalpipe.storage.warehouse import query

if TYPE_CHECKING:
    import dagster as dg

COLUMNS = ["run_id", "asset", "check", "passed", "severity", "blocking", "description"]

RUN_CHECKS_SQL = """
SELECT run_id, asset, "check", passed, severity, blocking, description FROM run_checks
WHERE ? IS NULL OR run_id = ? ORDER BY run_id, asset, "check"
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checks", help="the latest result of every check (per run and across runs)")
    p.add_argument("--run", metavar="RUN_ID", help="only this run's checks")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.set_defaults(func=cmd_checks)


def cross_run_results(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[list]:
    """Latest evaluation of each unpartitioned check (leaderboards, warehouse) from the instance."""
    import dagster as dg  # imported here: every other command starts faster without it

    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.asset_check_keys if graph.get(k).partitions_def is None]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    rows = []
    for key in sorted(keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        record = latest.get(key)
        event = record.event if record else None
        evaluation = (
            event.dagster_event.event_specific_data if event and event.dagster_event else None
        )
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            continue
        rows.append(
            [
                None,
                key.asset_key.to_user_string(),
                key.name,
                evaluation.passed,
                evaluation.severity.value,
                graph.get(key).blocking,
                evaluation.description,
            ]
        )
    return rows


def cmd_checks(args: argparse.Namespace) -> int:
    from evalpipe.definitions import build_definitions
    from evalpipe.defs.runner import get_instance

    settings = load_settings()
    _, per_run = query(settings.warehouse, RUN_CHECKS_SQL, [args.run, args.run])
    if args.run and not per_run:
        raise ValueError(f"no check results for run {args.run!r}; see `evalpipe runs`")
    rows = [list(r) for r in per_run]
    if not args.run:
        rows += cross_run_results(get_instance(settings), build_definitions(settings))
    if args.format == "json":
        print(json.dumps([dict(zip(COLUMNS, r, strict=True)) for r in rows], indent=2))
    else:
        print(render(COLUMNS, rows, args.format))
    return 0
