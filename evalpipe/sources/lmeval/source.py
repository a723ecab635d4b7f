"""The lm-eval source: results files in, the shared tables out, committed run by run.

Per run the results file is parsed once and its samples files streamed task by task; the
tables are staged side by side in the lake, the runs of a batch are checked together (each GX
suite validated once for all of them), and each run's check results and status join its
tables in one lake commit. A run that fails on bad input publishes nothing; the rest go on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from evalpipe.core.config import Settings
from evalpipe.core.inventory import RootScan, RunInventory, RunScan
from evalpipe.core.jsonl import DumpFormatError
from evalpipe.results.status import RunCheck, commit_checked, record_failed_attempt, run_status
from evalpipe.sources.base import CheckSpec, Progress, RunResult, TableAsset, refuse_lost_files
from evalpipe.sources.lmeval.checks import PER_RUN_CHECKS, RunToCheck, evaluate_runs
from evalpipe.sources.lmeval.reader import (
    ASSET_PREFIX,
    LmevalRun,
    read_results,
    results_path,
    scan_root,
    scan_run,
)
from evalpipe.sources.lmeval.tables import (
    RunTables,
    build_run_tables,
    prediction_batches,
    run_files_table,
    task_choices_table,
)
from evalpipe.sources.olmes.checks import lean_reader
from evalpipe.storage.lake import Lake, StagedPartitions
from evalpipe.storage.schemas import SCHEMAS

CHECK_GROUP_RUNS = 100
RUN_TABLES = (
    "run_files",
    "runs",
    "task_results",
    "task_metrics",
    "predictions",
    "task_choices",
    "run_checks",
    "run_status",
)

ASSETS = (
    TableAsset(
        "raw_run_inventory",
        "The run's files (its results_<ts>.json and samples_<task>_<ts>.jsonl) with sizes and "
        "mtimes (lake table `run_files`); their fingerprint tells whether the run changed.",
    ),
    TableAsset(
        "runs",
        "One row per results file: model and revision (from config.model_args), lm-eval "
        "version and git hash, date, and the whole config as JSON text.",
    ),
    TableAsset(
        "task_results",
        "One row per task and per group (groups are aggregates): the primary metric as "
        "lm-eval's table shows it first, n-samples, n-shot, version and task config.",
    ),
    TableAsset(
        "task_metrics",
        "Every numeric metric of every task and group, with its filter and standard error.",
    ),
    TableAsset(
        "predictions",
        "One row per document of each samples file (with --log_samples): target, responses "
        "and filtered responses, per-sample metrics.",
    ),
    TableAsset(
        "task_choices",
        "Answer choices per task (0 for generate_until tasks; multiple_choice tasks counted "
        "from their samples), for chance levels.",
    ),
)


@dataclass
class _StagedRun:
    scan: RunScan
    inventory: RunInventory
    run: LmevalRun
    tables: RunTables
    prediction_rows: dict[str, int]
    choice_rows: int
    staged: StagedPartitions
    seconds: float


class LmevalSource:
    """lm-evaluation-harness results under `EVALPIPE_LMEVAL`, one run per results file."""

    name = ASSET_PREFIX
    assets = ASSETS
    checks = tuple(CheckSpec(a, c, b, d) for a, c, b, d in PER_RUN_CHECKS)

    def root(self, settings: Settings) -> Path:
        return settings.lmeval

    def scan(self, root: Path) -> RootScan:
        return scan_root(root)

    def inventory(self, root: Path, run_id: str) -> RunInventory:
        path = results_path(root, run_id)
        if not path.is_file():
            raise DumpFormatError(path, None, "results file is gone")
        return scan_run(path, root)

    def ingest(
        self, scans: Iterable[RunScan], settings: Settings, progress: Progress
    ) -> Iterator[tuple[str, RunResult | Exception]]:
        lake = Lake(settings.lake)
        root = self.root(settings)
        group: list[_StagedRun] = []
        try:
            for scan in scans:
                try:
                    group.append(_stage(scan, root, lake, progress))
                except Exception as exc:  # bad input fails this run alone
                    record_failed_attempt(lake, scan.run_id, str(exc), scan.inventory.fingerprint)
                    yield scan.run_id, exc
                    continue
                if len(group) >= CHECK_GROUP_RUNS:
                    yield from _check_and_commit(group, lake)
                    group = []
            yield from _check_and_commit(group, lake)
        finally:
            for staged in group:
                staged.staged.discard()


def _stage(scan: RunScan, root: Path, lake: Lake, progress: Progress) -> _StagedRun:
    """Read one results file and its samples and stage every table (nothing published)."""
    started = time.perf_counter()
    path = results_path(root, scan.run_id)
    inventory = scan_run(path, root)
    inventory.refuse_problems()
    refuse_lost_files(lake, scan.run_id, inventory)
    run = read_results(path, inventory)
    tables = build_run_tables(scan.run_id, run, inventory.fingerprint)
    staged = lake.stage(scan.run_id, RUN_TABLES)
    try:
        staged.write("run_files", run_files_table(scan.run_id, inventory))
        staged.write("runs", tables.runs)
        staged.write("task_results", tables.task_results)
        staged.write("task_metrics", tables.task_metrics)
        choices = staged.write("task_choices", task_choices_table(scan.run_id, run))
        writer = staged.writer("predictions")
        rows: dict[str, int] = {}
        model_hash = tables.runs["model_hash"][0].as_py()
        for task, table in prediction_batches(scan.run_id, run, model_hash):
            progress(f"{scan.run_id}: {task}: {table.num_rows} samples")
            writer.write_table(table)
            rows[task] = table.num_rows
        writer.finish()
    except BaseException:
        staged.discard()
        raise
    seconds = time.perf_counter() - started
    return _StagedRun(scan, inventory, run, tables, rows, choices, staged, seconds)


def _check_and_commit(
    group: list[_StagedRun], lake: Lake
) -> Iterator[tuple[str, RunResult | Exception]]:
    if not group:
        return
    started = time.perf_counter()
    try:
        checks = evaluate_runs([RunToCheck(r.run, _reader(r.staged)) for r in group])
    except Exception as exc:
        for staged in group:
            staged.staged.discard()
            yield staged.scan.run_id, exc
        return
    share = (time.perf_counter() - started) / len(group)
    for staged, run_checks in zip(group, checks, strict=True):
        run_id = staged.scan.run_id
        try:
            commit_checked(lake, staged.staged, run_id, run_checks, staged.inventory.fingerprint)
        except Exception as exc:
            staged.staged.discard()
            yield run_id, exc
            continue
        yield run_id, _result(staged, run_checks, lake, staged.seconds + share)


def _reader(staged: StagedPartitions):
    """Staged partitions for the checks: the lean reader's scalar columns, except that the
    samples check needs the per-sample metrics of `predictions` and the metric checks need
    every column of `task_metrics`."""
    lean = lean_reader(staged)

    def read(table: str) -> pd.DataFrame:
        frame = lean(table)
        if table == "predictions":
            frame["metrics"] = staged.read(table, ["metrics"])["metrics"].to_pandas()
        return frame

    return read


def _result(staged: _StagedRun, checks: list[RunCheck], lake: Lake, seconds: float) -> RunResult:
    """What the UI shows for one committed run."""
    run_id, tables, run = staged.scan.run_id, staged.tables, staged.run
    status, reason = run_status(checks)

    def table(rows: int, lake_table: str) -> dict:
        return {
            "dagster/row_count": rows,
            "dagster/column_schema": SCHEMAS[lake_table],
            "path": lake.partition_file(lake_table, run_id),
        }

    files = pd.DataFrame(
        {
            "file": [f.name for f in staged.inventory.files],
            "bytes": [f.size for f in staged.inventory.files],
        }
    )
    scores = tables.task_results.select(
        ["task_name", "is_aggregate", "primary_metric", "primary_score", "num_instances"]
    ).to_pandas()
    per_task = pd.DataFrame(sorted(staged.prediction_rows.items()), columns=["task_name", "rows"])
    metadata = {
        "raw_run_inventory": {
            **table(len(staged.inventory.files), "run_files"),
            "source_dir": staged.inventory.run_dir,
            "fingerprint": staged.inventory.fingerprint,
            "total_bytes": staged.inventory.total_bytes,
            "files": files,
        },
        "runs": {
            **table(1, "runs"),
            "model": tables.runs["model"][0].as_py() or "",
            "lm_eval_version": tables.runs["source_version"][0].as_py() or "",
        },
        "task_results": {
            **table(tables.task_results.num_rows, "task_results"),
            "tasks": len(run.tasks),
            "groups": len(run.groups),
            "scores": scores,
        },
        "task_metrics": table(tables.task_metrics.num_rows, "task_metrics"),
        "task_choices": table(staged.choice_rows, "task_choices"),
        "predictions": {
            **table(sum(staged.prediction_rows.values()), "predictions"),
            "samples_files": len(run.samples),
            "rows_per_task": per_task,
        },
    }
    return RunResult(
        run_id=run_id,
        fingerprint=staged.inventory.fingerprint,
        status=status,
        status_reason=reason,
        checks=checks,
        metadata=metadata,
        seconds=seconds,
    )


LMEVAL = LmevalSource()
