"""Leaderboards across runs: per task, per benchmark and overall, kept current automatically.

Only runs whose status is `ok` are ranked; the boards are derived lake tables with warehouse
views, and each shows its top rows in the UI. They depend on every source's `run_status`, so
the lineage graph shows that quarantine decides what is ranked.
"""

from datetime import datetime, timezone

import dagster as dg
import pyarrow as pa

from evalpipe.defs.checks import check_result
from evalpipe.defs.metadata import markdown_preview, table_metadata
from evalpipe.defs.registry import downstream_keys, per_run_keys, report_sections
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.warehouse.conditions import REFRESH_ON_ANY_UPDATE
from evalpipe.integrity.cross_run import CHECK_LEADERBOARD_RUNS, leaderboard_runs_healthy
from evalpipe.results.leaderboard import build_leaderboards
from evalpipe.results.report import render_report, write_report
from evalpipe.results.suites import load_suites
from evalpipe.storage.warehouse import read_runs_with_status

GROUP = "leaderboards"
UPSTREAM = per_run_keys(["runs", "task_results", "task_choices", "run_status"])
DESCRIPTIONS = {
    "leaderboard_tasks": "One row per (model, revision, task): the newest run's primary score, "
    "ranked within the task.",
    "leaderboard_benchmarks": "The aggregate records (core_9mcqa, mmlu, ...) per model, ranked; "
    "an aggregate missing members of its suite ranks after the complete ones.",
    "leaderboard_overall": "Per model over the declared task set (EVALPIPE_BOARD_TASKS, default "
    "every task on the board): complete or not, tasks covered, mean score, HELM mean win rate "
    "against the complete models, chance-normalized mean. Incomplete models rank last.",
    "leaderboard_runs": "Per run: ranked, partly superseded, superseded (the newest "
    "evaluated_at of a model and task wins) and by which run, or left out and why.",
}
BOARDS = tuple(DESCRIPTIONS)
RANKED_BOARDS = ("leaderboard_tasks", "leaderboard_benchmarks")


@dg.multi_asset(
    group_name=GROUP,
    specs=[
        dg.AssetSpec(
            name,
            deps=UPSTREAM,
            kinds={"parquet"},
            description=description,
            automation_condition=REFRESH_ON_ANY_UPDATE,
        )
        for name, description in DESCRIPTIONS.items()
    ],
)
def leaderboards(context: dg.AssetExecutionContext, evalpipe: EvalpipeHome):
    lake = evalpipe.lake
    settings = evalpipe.settings()
    boards = build_leaderboards(
        read_runs_with_status(lake),
        lake.read_all("task_results").to_pandas(),
        lake.read_all("task_choices").to_pandas(),
        suites=load_suites(settings.suites_file),
        board_tasks=settings.board_tasks,
    )
    if not boards.runs_excluded.empty:
        context.log.info(f"{len(boards.runs_excluded)} runs left out (not 'ok')")
    superseded = {
        "leaderboard_tasks": boards.tasks.superseded,
        "leaderboard_benchmarks": boards.benchmarks.superseded,
    }
    for name, frame in boards.tables().items():
        table = pa.Table.from_pandas(frame, preserve_index=False)
        lake.write_derived(name, table)
        metadata = {
            **table_metadata(table, lake.derived_file(name)),
            "runs_counted": boards.runs_counted,
            "runs_excluded": len(boards.runs_excluded),
            "top_rows": markdown_preview(frame, max_rows=15),
        }
        if name in superseded:
            metadata["superseded_rows"] = superseded[name]
        yield dg.MaterializeResult(asset_key=name, metadata=metadata)


@dg.multi_asset_check(
    name="leaderboard_integrity_checks",
    specs=[
        dg.AssetCheckSpec(
            CHECK_LEADERBOARD_RUNS,
            asset=board,
            blocking=True,
            description="ERROR, blocking: every ranked row comes from a run whose status is ok "
            "(never a quarantined or unchecked run).",
        )
        for board in RANKED_BOARDS
    ],
)
def leaderboard_integrity_checks(evalpipe: EvalpipeHome):
    runs = read_runs_with_status(evalpipe.lake)
    for board in RANKED_BOARDS:
        frame = evalpipe.lake.read_derived(board).to_pandas()
        yield check_result(board, leaderboard_runs_healthy(frame, runs, board))


@dg.asset(
    group_name=GROUP,
    kinds={"html"},
    deps=list(BOARDS) + downstream_keys(),
    automation_condition=REFRESH_ON_ANY_UPDATE,
    description="reports/leaderboard.html: a self-contained page (no network) with the "
    "boards and where each run stands, sortable by any column, a chart per task, and links between them.",
)
def leaderboard_report(evalpipe: EvalpipeHome) -> dg.MaterializeResult:
    lake = evalpipe.lake
    boards = {name: lake.read_derived(name).to_pandas() for name in DESCRIPTIONS}
    html = render_report(
        boards["leaderboard_overall"],
        boards["leaderboard_benchmarks"],
        boards["leaderboard_tasks"],
        runs=boards["leaderboard_runs"],
        generated_at=datetime.now(timezone.utc),
        sections=report_sections(lake),
    )
    path = write_report(evalpipe.home_path / "reports", html)
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)), "bytes": len(html.encode())}
    )
