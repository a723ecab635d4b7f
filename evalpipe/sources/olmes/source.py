"""The OLMES source: one run directory in, every table of it out, committed together.

`metrics-all.jsonl` is parsed once; the task tables, the instance tables, the inventory and the
run's check results and status are staged side by side and published in one lake commit, after
the checks have judged the staged (new) version. A run that fails on bad input publishes
nothing: its previous version stays as it was.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from evalpipe.core.config import Settings
from evalpipe.core.inventory import RunInventory, RunScan
from evalpipe.results.status import checks_table, run_status, status_table
from evalpipe.results.suites import load_suites
from evalpipe.sources.base import CheckSpec, Progress, RunResult, TableAsset
from evalpipe.sources.olmes.checks import PER_RUN_CHECKS, evaluate_run, lean_reader
from evalpipe.sources.olmes.instances import DEFAULT_BATCH_ROWS, TABLES, write_instances
from evalpipe.sources.olmes.reader import SOURCE_NAME, read_run, scan_dumps, scan_run
from evalpipe.sources.olmes.reconstruct import plan_reconstruction, write_reconstruction
from evalpipe.sources.olmes.tables import build_run_tables, run_files_table, task_choices_table
from evalpipe.storage.lake import Lake
from evalpipe.storage.schemas import SCHEMAS

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
        "lacks them (reconstructed/<run_id>/); where it has them, every difference is reported.",
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
}


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

    def scan(self, root: Path) -> list[RunScan]:
        return scan_dumps(root)

    def inventory(self, root: Path, run_id: str) -> RunInventory:
        return scan_run(root / run_id)

    def ingest(self, scan: RunScan, settings: Settings, progress: Progress) -> RunResult:
        started = time.perf_counter()
        run_id, run_dir = scan.run_id, scan.inventory.run_dir
        inventory = scan_run(run_dir)
        records = read_run(run_dir)
        tables = build_run_tables(
            run_id, run_dir, records=records, fingerprint=inventory.fingerprint
        )
        files_table = run_files_table(run_id, inventory)
        choices = task_choices_table(run_id, records.task_files)
        artifacts, reconstruction = plan_reconstruction(records)
        lake = Lake(settings.lake)
        with lake.stage(run_id, RUN_TABLES, row_group_size=DEFAULT_BATCH_ROWS) as staged:
            instances = write_instances(run_id, run_dir, staged, progress=progress)
            staged.write("run_files", files_table)
            staged.write("runs", tables.runs)
            staged.write("task_results", tables.task_results)
            staged.write("task_metrics", tables.task_metrics)
            staged.write("task_choices", choices)
            checks = evaluate_run(
                records,
                reconstruction,
                lean_reader(staged),
                load_suites(settings.suites_file),
            )
            checked_at = datetime.now(timezone.utc)
            staged.write("run_checks", checks_table(run_id, checks, checked_at))
            staged.write("run_status", status_table(run_id, checks, checked_at))
            target = settings.reconstructed / run_id
            if artifacts:
                write_reconstruction(target, artifacts)
            elif target.exists():
                shutil.rmtree(target)
            staged.commit()
        status, reason = run_status(checks)
        warnings = [f"{f.path}: {f.message}" for f in records.findings + instances.findings]
        warnings += [
            f"{m.path}: differs from metrics-all.jsonl ({m.detail})"
            for m in reconstruction.mismatches
        ]
        results = tables.task_results.to_pandas()
        aggregates = results.loc[
            results["is_aggregate"],
            ["task_name", "primary_metric", "primary_score", "num_instances"],
        ]
        files = pd.DataFrame(
            {"file": [f.name for f in inventory.files], "bytes": [f.size for f in inventory.files]}
        )
        mismatches = pd.DataFrame(
            [(m.task_name, m.kind, m.path.name, m.detail) for m in reconstruction.mismatches],
            columns=["task_name", "kind", "file", "detail"],
        )

        def table(name: str, rows: int, lake_table: str | None = None) -> dict:
            lake_table = lake_table or name
            return {
                "dagster/row_count": rows,
                "dagster/column_schema": SCHEMAS[lake_table],
                "path": lake.partition_file(lake_table, run_id),
            }

        metadata = {
            "raw_run_inventory": {
                **table("raw_run_inventory", files_table.num_rows, "run_files"),
                "source_dir": run_dir,
                "fingerprint": inventory.fingerprint,
                "total_bytes": inventory.total_bytes,
                "files": files,
            },
            "runs": {
                **table("runs", tables.runs.num_rows),
                "model": tables.runs["model"][0].as_py() or "",
                "duplicate_lines_dropped": records.duplicates_dropped,
            },
            "task_results": {
                **table("task_results", tables.task_results.num_rows),
                "tasks": len(records.tasks),
                "aggregates": len(records.aggregates),
                "artifact_only_tasks": int((results["source"] == "artifacts").sum()),
                "findings": len(records.findings),
                "aggregate_scores": aggregates,
            },
            "task_metrics": table("task_metrics", tables.task_metrics.num_rows),
            "task_choices": table("task_choices", choices.num_rows),
            "reconstructed_artifacts": {
                "path": target,
                "files_written": len(reconstruction.written),
                "files_compared": reconstruction.compared,
                "mismatches": len(reconstruction.mismatches),
                "mismatch_details": mismatches,
            },
        }
        for name in TABLES:
            per_task = pd.DataFrame(
                sorted(instances.rows.get(name, {}).items()), columns=["task_name", "rows"]
            )
            metadata[name] = {
                **table(name, instances.table_rows.get(name, 0)),
                "rows_per_task": per_task,
                "mb_per_second": round(instances.mb_per_second, 1),
            }
        return RunResult(
            run_id=run_id,
            fingerprint=inventory.fingerprint,
            status=status,
            status_reason=reason,
            checks=checks,
            metadata=metadata,
            warnings=warnings,
            seconds=time.perf_counter() - started,
        )


OLMES = OlmesSource()
