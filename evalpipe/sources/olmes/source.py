"""The OLMES source: run directories in, every table of each out, committed run by run.

Per run, `metrics-all.jsonl` is parsed once; the task tables, the instance tables and the
inventory are staged side by side in the lake. Runs are then checked in groups (each GX suite
validated once for the group: its cost is per validation, not per row) and each run's check
results and status join its staged tables in one lake commit, so the checks judge the new
version before anyone sees it. A run that fails on bad input publishes nothing: its previous
version stays as it was, and the rest of the batch goes on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evalpipe.core.config import Settings
from evalpipe.core.inventory import RootScan, RunInventory, RunScan
from evalpipe.core.jsonl import DumpFormatError
from evalpipe.core.memory import release_memory
from evalpipe.integrity.gx_suites import prepare_in_background
from evalpipe.results.status import RunCheck, commit_checked, record_failed_attempt, run_status
from evalpipe.results.suites import load_suites
from evalpipe.sources.base import CheckSpec, Progress, RunResult, TableAsset, refuse_lost_files
from evalpipe.sources.olmes.checks import (
    PER_RUN_CHECKS,
    RunToCheck,
    evaluate_runs,
    lean_reader,
)
from evalpipe.sources.olmes.instances import (
    DEFAULT_BATCH_ROWS,
    TABLES,
    InstanceIngestReport,
    write_instances,
)
from evalpipe.sources.olmes.reader import (
    METRICS_ALL,
    SOURCE_NAME,
    RunRecords,
    read_run,
    scan_dumps,
    scan_run,
)
from evalpipe.sources.olmes.reconstruct import (
    ReconstructionReport,
    plan_reconstruction,
)
from evalpipe.sources.olmes.tables import (
    RunTables,
    build_run_tables,
    run_files_table,
    task_choices_table,
)
from evalpipe.storage.lake import Lake, StagedPartitions
from evalpipe.storage.schemas import SCHEMAS

CHECK_GROUP_ROWS = 1_000_000
"""Instance rows of the runs checked together at most (their key columns are held in memory)."""
CHECK_GROUP_RUNS = 100

RUN_TABLES = (
    "run_files",
    "runs",
    "task_results",
    "task_metrics",
    *TABLES,
    "task_choices",
    "run_checks",
    "run_status",
)

ASSETS = (
    TableAsset(
        "raw_run_inventory",
        "Every file of the run directory with its size and mtime (lake table `run_files`); the "
        "fingerprint that tells whether the run changed since it was last ingested.",
    ),
    TableAsset("runs", "One row per run directory: model, revision, task and aggregate counts."),
    TableAsset(
        "task_results",
        "One row per task of a run, aggregates included (from metrics-all.jsonl), plus tasks "
        "present only as artifact files (old dumps).",
    ),
    TableAsset("task_metrics", "One row per numeric entry of each task's `metrics` object."),
    TableAsset(
        "predictions",
        "One row per document: per-instance metrics and model output (JSON text).",
    ),
    TableAsset("requests", "One row per request sent to the model (several per document)."),
    TableAsset("recorded_inputs", "The recorded prompts of the first documents of each task."),
    TableAsset(
        "task_choices", "Answer choices per task (0 for generative tasks), for chance levels."
    ),
    TableAsset(
        "reconstructed_artifacts",
        "Per-task -metrics.json / -config.json rebuilt from metrics-all.jsonl where the dump "
        "lacks them, committed with the run's tables (lake/artifacts/run_id=<key>/<version>/, "
        "named by the run's commit record); where it has them, every difference is reported.",
        kinds=frozenset({"json"}),
    ),
)

CHECK_DESCRIPTIONS = {
    "task_results_schema_and_ranges": "Great Expectations suite on the run's task_results: "
    "required columns and types, non-null keys, one row per task, primary_score in [0, 1] for "
    "bounded metrics and a number on every metrics-all row, num_instances positive, "
    "evaluated_at parsed and not in the future.",
    "task_rows_match_source": "task_results has exactly one row per task the source files "
    "define: every unique metrics-all.jsonl record plus every artifact-only task.",
    "aggregates_match_members": "Each aggregate (core_9mcqa, mmlu, ...) whose members are all "
    "present equals their macro or micro mean within 1e-6.",
    "aggregate_members_present": "Each aggregate's member tasks are all in the run "
    "(informational: a partial aggregate cannot be recomputed).",
    "no_source_conflicts": "No task has two different records in metrics-all.jsonl (the "
    "newer current_date is kept) and no task file name is duplicated.",
    "predictions_schema_and_keys": "Great Expectations suite on the run's predictions: "
    "required columns and types, non-null keys, one row per (task, doc_id).",
    "predictions_match_num_instances": "Every task has as many predictions rows as its "
    "num_instances says.",
    "requests_schema_and_keys": "Great Expectations suite on the run's requests: required "
    "columns and types, non-null keys, one row per (task, doc_id, idx).",
    "source_task_files_match_metrics_all": "The dump's own per-task -metrics.json and "
    "-config.json agree with metrics-all.jsonl (informational).",
    "instance_metrics_are_finite": "No predictions row has NaN or Infinity in its per-instance "
    "metrics (informational: counted per task; strict JSON readers reject them).",
}


@dataclass
class _StagedRun:
    """One run between staging its tables and committing them with its check results."""

    scan: RunScan
    inventory: RunInventory
    records: RunRecords
    tables: RunTables
    files_table: pa.Table
    choices: pa.Table
    artifacts: dict[str, bytes]
    reconstruction: ReconstructionReport
    instances: InstanceIngestReport
    staged: StagedPartitions
    seconds: float

    @property
    def rows(self) -> int:
        return sum(self.instances.table_rows.values())


class OlmesSource:
    """OLMES / oe-eval dumps under `EVALPIPE_DUMPS`, one run per directory."""

    name = SOURCE_NAME
    assets = ASSETS
    checks = tuple(
        CheckSpec(asset, check, blocking, CHECK_DESCRIPTIONS[check])
        for asset, check, blocking in PER_RUN_CHECKS
    )

    def root(self, settings: Settings) -> Path:
        return settings.dumps

    def scan(self, root: Path) -> RootScan:
        return scan_dumps(root)

    def inventory(self, root: Path, run_id: str) -> RunInventory:
        return scan_run(root / run_id, root)

    def ingest(
        self, scans: Iterable[RunScan], settings: Settings, progress: Progress
    ) -> Iterator[tuple[str, RunResult | Exception]]:
        lake = Lake(settings.lake)
        suites = load_suites(settings.suites_file)
        prepare_in_background()  # GX's import overlaps the first runs' reading and writing
        group: list[_StagedRun] = []
        try:
            for scan in scans:
                try:
                    group.append(_stage(scan, self.root(settings), lake, progress))
                except Exception as exc:  # bad input fails this run alone
                    record_failed_attempt(lake, scan.run_id, str(exc), scan.inventory.fingerprint)
                    yield scan.run_id, exc
                    continue
                if sum(r.rows for r in group) >= CHECK_GROUP_ROWS or len(group) >= CHECK_GROUP_RUNS:
                    yield from _check_and_commit(group, suites, lake)
                    group = []
            yield from _check_and_commit(group, suites, lake)
        finally:
            for run in group:
                run.staged.discard()


def _stage(scan: RunScan, root: Path, lake: Lake, progress: Progress) -> _StagedRun:
    """Read one run directory and stage every table of it (nothing is published yet)."""
    started = time.perf_counter()
    run_id, run_dir = scan.run_id, scan.inventory.run_dir
    inventory = scan_run(run_dir, root)
    inventory.refuse_problems()
    records = read_run(run_dir)
    _refuse_shrinking(lake, run_id, inventory, records)
    tables = build_run_tables(run_id, run_dir, records=records, fingerprint=inventory.fingerprint)
    artifacts, reconstruction = plan_reconstruction(records)
    staged = lake.stage(run_id, RUN_TABLES, row_group_size=DEFAULT_BATCH_ROWS)
    try:
        instances = write_instances(run_id, run_dir, staged, progress=progress)
        run = _StagedRun(
            scan=scan,
            inventory=inventory,
            records=records,
            tables=tables,
            files_table=run_files_table(run_id, inventory),
            choices=task_choices_table(run_id, records.task_files),
            artifacts=artifacts,
            reconstruction=reconstruction,
            instances=instances,
            staged=staged,
            seconds=0.0,
        )
        staged.write("run_files", run.files_table)
        staged.write("runs", tables.runs)
        staged.write("task_results", tables.task_results)
        staged.write("task_metrics", tables.task_metrics)
        staged.write("task_choices", run.choices)
    except BaseException:
        staged.discard()
        raise
    run.seconds = time.perf_counter() - started
    return run


def _check_and_commit(
    group: list[_StagedRun], suites: dict, lake: Lake
) -> Iterator[tuple[str, RunResult | Exception]]:
    """Check a group of staged runs together, then commit each with its checks and status."""
    if not group:
        return
    release_memory()  # what staging freed, before the checks' frames are read
    started = time.perf_counter()
    try:
        checks = evaluate_runs(
            [
                RunToCheck(
                    r.records,
                    r.reconstruction,
                    lean_reader(r.staged),
                    r.instances.nonfinite_metrics,
                )
                for r in group
            ],
            suites,
        )
    except Exception as exc:
        for run in group:
            run.staged.discard()
            yield run.scan.run_id, exc
        return
    share = (time.perf_counter() - started) / len(group)
    for run, run_checks in zip(group, checks, strict=True):
        run_id = run.scan.run_id
        try:
            commit_checked(
                lake,
                run.staged,
                run_id,
                run_checks,
                run.inventory.fingerprint,
                before_publish=lambda run=run: run.staged.write_artifacts(run.artifacts),
            )
        except Exception as exc:
            run.staged.discard()
            yield run_id, exc
            continue
        yield run_id, _result(run, run_checks, lake, run.seconds + share)


def _refuse_shrinking(
    lake: Lake, run_id: str, inventory: RunInventory, records: RunRecords
) -> None:
    """An emptied or shrunken run directory is an error, not an update: files that vanished,
    or a `metrics-all.jsonl` left with no records where the published version had some, would
    silently wipe stored results (deleting data is the retention and archive jobs' work)."""
    refuse_lost_files(lake, run_id, inventory)
    record = lake.record(run_id)
    if record is None or "run_files" not in record["tables"]:
        return
    before = lake.read("run_files", run_id).column("name").to_pylist()
    if METRICS_ALL in before and not any(r.source == "metrics-all" for r in records.records):
        had = pc.sum(pc.equal(lake.read("task_results", run_id)["source"], "metrics-all"))
        if had.as_py():
            raise DumpFormatError(
                inventory.run_dir / METRICS_ALL,
                None,
                f"no records, where the published version had {had.as_py()}; the published "
                "version is kept",
            )


def _result(run: _StagedRun, checks: list[RunCheck], lake: Lake, seconds: float) -> RunResult:
    """What the UI shows for one committed run."""
    run_id, records, tables = run.scan.run_id, run.records, run.tables
    status, reason = run_status(checks)
    warnings = [f"{f.path}: {f.message}" for f in records.findings + run.instances.findings]
    warnings += [
        f"{m.path}: differs from metrics-all.jsonl ({m.detail})"
        for m in run.reconstruction.mismatches
    ]
    results = tables.task_results.to_pandas()
    aggregates = results.loc[
        results["is_aggregate"], ["task_name", "primary_metric", "primary_score", "num_instances"]
    ]
    files = pd.DataFrame(
        {
            "file": [f.name for f in run.inventory.files],
            "bytes": [f.size for f in run.inventory.files],
        }
    )
    mismatches = pd.DataFrame(
        [(m.task_name, m.kind, m.path.name, m.detail) for m in run.reconstruction.mismatches],
        columns=["task_name", "kind", "file", "detail"],
    )

    def table(rows: int, lake_table: str) -> dict:
        return {
            "dagster/row_count": rows,
            "dagster/column_schema": SCHEMAS[lake_table],
            "path": lake.partition_file(lake_table, run_id),
        }

    metadata = {
        "raw_run_inventory": {
            **table(run.files_table.num_rows, "run_files"),
            "source_dir": run.inventory.run_dir,
            "fingerprint": run.inventory.fingerprint,
            "total_bytes": run.inventory.total_bytes,
            "files": files,
        },
        "runs": {
            **table(tables.runs.num_rows, "runs"),
            "model": tables.runs["model"][0].as_py() or "",
            "duplicate_lines_dropped": records.duplicates_dropped,
        },
        "task_results": {
            **table(tables.task_results.num_rows, "task_results"),
            "tasks": len(records.tasks),
            "aggregates": len(records.aggregates),
            "artifact_only_tasks": int((results["source"] == "artifacts").sum()),
            "findings": len(records.findings),
            "aggregate_scores": aggregates,
        },
        "task_metrics": table(tables.task_metrics.num_rows, "task_metrics"),
        "task_choices": table(run.choices.num_rows, "task_choices"),
        "reconstructed_artifacts": {
            "path": lake.artifacts_dir(run_id) or "(none: the dump has every per-task file)",
            "files_written": len(run.reconstruction.written),
            "files_compared": run.reconstruction.compared,
            "mismatches": len(run.reconstruction.mismatches),
            "mismatch_details": mismatches,
        },
    }
    for name in TABLES:
        per_task = pd.DataFrame(
            sorted(run.instances.rows.get(name, {}).items()), columns=["task_name", "rows"]
        )
        metadata[name] = {
            **table(run.instances.table_rows.get(name, 0), name),
            "rows_per_task": per_task,
            "mb_per_second": round(run.instances.mb_per_second, 1),
        }
    return RunResult(
        run_id=run_id,
        fingerprint=run.inventory.fingerprint,
        status=status,
        status_reason=reason,
        checks=checks,
        metadata=metadata,
        warnings=warnings,
        seconds=seconds,
    )


OLMES = OlmesSource()
