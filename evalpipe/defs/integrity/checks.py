"""Per-run asset checks: GX suites and reconciliation, evaluated together after each ingest.

One multi-check computes every outcome (they share the reads), reports each on its asset in the
UI, and records the run's outcomes and status (`ok` / `quarantined`) in the lake, where the
leaderboards and the `runs` view read them.
"""

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from evalpipe.defs.partitions import olmes_runs
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.integrity.cross_run import (
    CHECK_LEADERBOARD_RUNS,
    CHECK_WAREHOUSE_VIEWS,
    leaderboard_runs_healthy,
    warehouse_matches_lake,
)
from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.integrity.run_checks import PER_RUN_CHECKS, checks_table, evaluate_run, status_table
from evalpipe.lake import SCHEMAS
from evalpipe.suites import load_suites
from evalpipe.warehouse import connect_read_only, read_runs_with_status, sql_identifier

PER_RUN_CHECKS_STEP = "run_integrity_checks"
SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}


def _metadata_value(value: object) -> dg.MetadataValue:
    if isinstance(value, str) and value.startswith("|"):
        return dg.MetadataValue.md(value)
    if isinstance(value, bool | int | float | str):
        return dg.MetadataValue.text(str(value)) if isinstance(value, bool) else value
    return (
        dg.MetadataValue.json(value)
        if isinstance(value, dict | list)
        else dg.MetadataValue.text(str(value))
    )


@dg.multi_asset_check(
    name=PER_RUN_CHECKS_STEP,
    specs=[
        dg.AssetCheckSpec(
            name=check,
            asset=asset,
            blocking=blocking,
            partitions_def=olmes_runs,
            description=("ERROR, blocking: " if blocking else "WARN: ") + check.replace("_", " "),
        )
        for asset, check, blocking in PER_RUN_CHECKS
    ],
)
def run_integrity_checks(context: dg.AssetCheckExecutionContext, evalpipe: EvalpipeHome):
    run_id = context.partition_key
    suites = load_suites(Path(evalpipe.suites_file) if evalpipe.suites_file else None)
    checks = evaluate_run(run_id, evalpipe.run_dir(run_id), evalpipe.lake, suites)
    checked_at = datetime.now(timezone.utc)
    evalpipe.lake.write("run_checks", run_id, checks_table(run_id, checks, checked_at))
    evalpipe.lake.write("run_status", run_id, status_table(run_id, checks, checked_at))
    for check in checks:
        outcome = check.outcome
        if not outcome.passed:
            context.log.warning(f"{run_id}: {outcome.check} failed: {outcome.description}")
        yield _result(check.asset, outcome)


def _result(asset: str, outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=outcome.check,
        passed=outcome.passed,
        severity=SEVERITY[outcome.severity],
        description=outcome.description,
        metadata={k: _metadata_value(v) for k, v in outcome.metadata.items()},
    )


RANKED_BOARDS = ("leaderboard_tasks", "leaderboard_benchmarks")


@dg.multi_asset_check(
    name="leaderboard_integrity_checks",
    specs=[
        dg.AssetCheckSpec(
            CHECK_LEADERBOARD_RUNS,
            asset=board,
            blocking=True,
            description="ERROR, blocking: every ranked row comes from a run whose status is ok",
        )
        for board in RANKED_BOARDS
    ],
)
def leaderboard_integrity_checks(evalpipe: EvalpipeHome):
    runs = read_runs_with_status(evalpipe.lake)
    for board in RANKED_BOARDS:
        frame = evalpipe.lake.read_derived(board).to_pandas()
        yield _result(board, leaderboard_runs_healthy(frame, runs, board))


@dg.asset_check(
    asset="warehouse",
    name=CHECK_WAREHOUSE_VIEWS,
    description="WARN: each warehouse view has as many rows as its lake table",
)
def warehouse_views_match_lake(evalpipe: EvalpipeHome) -> dg.AssetCheckResult:
    lake = evalpipe.lake
    tables = [t for t in SCHEMAS if lake.has_data(t)] + lake.derived_tables()
    with connect_read_only(evalpipe.warehouse_path) as con:
        views = {
            t: con.execute(f"SELECT count(*) FROM {sql_identifier(t)}").fetchone()[0]
            for t in tables
        }
    return _result(
        "warehouse", warehouse_matches_lake(views, {t: lake.count_rows(t) for t in tables})
    )
