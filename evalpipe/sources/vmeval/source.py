"""The VMEvalKit source: data roots in, their question, output, evaluation and issue tables out.

Each data root (a directory with `questions/` below `EVALPIPE_DATASETS`) is one partition,
keyed by its path below that root. Its files are validated and read in one pass; the valid rows
and every issue are staged, the checks judge the staged tables, and everything is committed in
one lake commit. A data root with a validation error is quarantined (kept out of success rates
and agreement); when it had a healthy version before, that version stays published. Its rows in
the shared `runs`/`run_status`/`run_checks` tables have the run id `vmeval:<dataset>`, so they
never collide with an OLMES run of the same relative path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa

from evalpipe.core.config import Settings
from evalpipe.core.inventory import RootScan, RunInventory, RunScan
from evalpipe.core.jsonl import DumpFormatError
from evalpipe.results.status import commit_checked, record_failed_attempt, run_status
from evalpipe.sources.base import CheckSpec, Progress, RunResult, TableAsset, refuse_lost_files
from evalpipe.sources.vmeval.checks import PER_RUN_CHECKS, evaluate
from evalpipe.sources.vmeval.layout import (
    QUESTIONS,
    dataset_key,
    find_data_roots,
    inventory,
    missing_archived_parts,
)
from evalpipe.sources.vmeval.reader import read_data_root
from evalpipe.sources.vmeval.tables import DataRootTables, build_tables
from evalpipe.storage.lake import Lake
from evalpipe.storage.schemas import SCHEMAS

SOURCE_NAME = "vmeval"
RUN_PREFIX = "vmeval:"
TABLES = ("vm_questions", "vm_outputs", "vm_evaluations", "vm_manifest_issues")
RUN_TABLES = ("run_files", "runs", *TABLES, "run_checks", "run_status")

ASSETS = (
    TableAsset(
        "raw_dataset_inventory",
        "Every file of the data root with its size and mtime (lake table `run_files`): the "
        "fingerprint that tells whether the data root changed since its last ingest.",
    ),
    TableAsset(
        "vm_questions",
        "One row per valid question: id, domain, category, difficulty, prompt, image paths, "
        "the domain payload as JSON text. Its checks are the manifest validation.",
    ),
    TableAsset(
        "vm_outputs",
        "One row per valid model run (run-folder and flat layouts), is_latest marking the run "
        "that counts when a task ran several times.",
    ),
    TableAsset(
        "vm_evaluations",
        "One row per valid evaluator file: score, status (completed/skipped/failed, null for "
        "human files), success = score >= 4 (null when not scored).",
    ),
    TableAsset(
        "vm_manifest_issues",
        "Every validation finding, as `evalpipe validate` reports it.",
    ),
)


def lake_run_id(dataset: str) -> str:
    return RUN_PREFIX + dataset


class VmevalSource:
    """VMEvalKit data roots under `EVALPIPE_DATASETS`, one partition per data root."""

    name = SOURCE_NAME
    partition_unit = "datasets"
    assets = ASSETS
    checks = tuple(CheckSpec(*spec) for spec in PER_RUN_CHECKS)

    def root(self, settings: Settings) -> Path:
        return settings.datasets

    def scan(self, root: Path) -> RootScan:
        roots, skipped = find_data_roots(root)
        runs = [RunScan(self.name, dataset_key(root, d), inventory(d)) for d in roots]
        return RootScan(runs, skipped)

    def inventory(self, root: Path, run_id: str) -> RunInventory:
        data_root = root / run_id
        if not (data_root / QUESTIONS).is_dir():
            raise DumpFormatError(data_root, None, "not a data root (no questions/ folder)")
        return inventory(data_root)

    def ingest(
        self, scans: Iterable[RunScan], settings: Settings, progress: Progress
    ) -> Iterator[tuple[str, RunResult | Exception]]:
        lake = Lake(settings.lake)
        for scan in scans:
            try:
                yield scan.run_id, _ingest_one(scan, lake, progress)
            except Exception as exc:  # one bad data root fails alone
                record_failed_attempt(
                    lake, lake_run_id(scan.run_id), str(exc), scan.inventory.fingerprint
                )
                yield scan.run_id, exc


def _ingest_one(scan: RunScan, lake: Lake, progress: Progress) -> RunResult:
    started = time.perf_counter()
    dataset, data_root = scan.run_id, scan.inventory.run_dir
    files = inventory(data_root)
    files.refuse_problems()
    run_id = lake_run_id(dataset)
    refuse_lost_files(lake, run_id, files)
    progress(f"{dataset}: validating {len(files.files)} files")
    data = read_data_root(data_root, dataset)
    tables = _with_archived_rows(lake, run_id, data_root, build_tables(data))
    checks = evaluate(tables, data.log.issues)
    now = datetime.now(timezone.utc)
    with lake.stage(run_id, RUN_TABLES) as staged:
        staged.write("run_files", _files_table(run_id, files))
        staged.write(
            "runs", _runs_table(run_id, dataset, data_root, files, len(data.questions), now)
        )
        for name, table in tables.items():
            staged.write(name, table)
        commit_checked(lake, staged, run_id, checks, files.fingerprint, checked_at=now)
    status, reason = run_status(checks)
    issues = data.log.issues
    warnings = [f"{dataset}: {i.path}: {i.code}: {i.message}" for i in data.log.warnings]

    def table(name: str) -> dict:
        return {
            "dagster/row_count": getattr(tables, name).num_rows,
            "dagster/column_schema": SCHEMAS[name],
        }

    metadata = {
        "raw_dataset_inventory": {
            "dagster/row_count": len(files.files),
            "source_dir": data_root,
            "fingerprint": files.fingerprint,
            "total_bytes": files.total_bytes,
        },
        "vm_questions": {
            **table("vm_questions"),
            "questions_found": len(data.questions),
            "has_manifest": data.has_manifest,
        },
        "vm_outputs": {**table("vm_outputs"), "superseded_runs": data.superseded_runs},
        "vm_evaluations": table("vm_evaluations"),
        "vm_manifest_issues": {
            **table("vm_manifest_issues"),
            "errors": len(data.log.errors),
            "warnings": len(data.log.warnings),
            "issues": pd.DataFrame(
                [(i.path, i.code, i.severity, i.message) for i in issues],
                columns=["path", "code", "severity", "message"],
            ),
        },
    }
    return RunResult(
        run_id=dataset,
        fingerprint=files.fingerprint,
        status=status,
        status_reason=reason,
        checks=checks,
        metadata=metadata,
        warnings=warnings,
        seconds=time.perf_counter() - started,
    )


ARCHIVED_ROWS = {"vm_outputs": "source_dir", "vm_evaluations": "source_file"}
"""Per table, the column holding a row's path in the data root (`outputs/<experiment>/...`)."""


def _with_archived_rows(
    lake: Lake, run_id: str, data_root: Path, tables: DataRootTables
) -> DataRootTables:
    """Output experiments and evaluation folders archived away (only their stub is local)
    keep their rows: those of the published version are carried into the new one. Their
    `is_latest` stands, since runs are compared only within one experiment folder."""
    missing = missing_archived_parts(data_root)
    record = lake.record(run_id)
    if not missing or record is None:
        return tables
    carried = {}
    for name, column in ARCHIVED_ROWS.items():
        if name not in record["tables"]:
            continue
        before = lake.read(name, run_id)
        paths = before.column(column).to_pylist()
        keep = [i for i, p in enumerate(paths) if any(p.startswith(f"{m}/") for m in missing)]
        fresh = getattr(tables, name)
        carried[name] = pa.concat_tables(
            [fresh, before.take(pa.array(keep, pa.int64())).cast(fresh.schema)]
        )
    return replace(tables, **carried)


def _area(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else "root"


def _files_table(run_id: str, files: RunInventory) -> pa.Table:
    rows = [
        {
            "run_id": run_id,
            "name": f.name,
            "task_name": None,
            "kind": _area(f.name),
            "size": f.size,
            "mtime": datetime.fromtimestamp(f.mtime_ns / 1e9, timezone.utc),
        }
        for f in files.files
    ]
    return pa.Table.from_pylist(rows, SCHEMAS["run_files"])


def _runs_table(
    run_id: str,
    dataset: str,
    data_root: Path,
    files: RunInventory,
    n_questions: int,
    now: datetime,
) -> pa.Table:
    row = {
        "run_id": run_id,
        "source": SOURCE_NAME,
        "dump": dataset,
        "source_dir": str(data_root),
        "n_tasks": n_questions,
        "n_aggregates": 0,
        "duplicates_dropped": 0,
        "fingerprint": files.fingerprint,
        "ingested_at": now,
    }
    return pa.Table.from_pylist([row], SCHEMAS["runs"])


VMEVAL = VmevalSource()
