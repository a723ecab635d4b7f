"""Per-run assets for OLMES dumps: the raw inventory and the task-level tables.

Thin by design: reading and table building live in `evalpipe.formats` / `evalpipe.run_tables`;
these functions write the lake partition and report what a person wants to see in the UI.
"""

import dagster as dg
import pandas as pd

from evalpipe.defs.metadata import markdown_preview, table_metadata
from evalpipe.defs.olmes.jobs import INGEST_GROUP
from evalpipe.defs.partitions import olmes_runs
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.formats.olmes import read_run, scan_run
from evalpipe.reconstruct import reconstruct_run
from evalpipe.run_tables import build_run_tables, run_files_table

GROUP = INGEST_GROUP


@dg.asset(
    partitions_def=olmes_runs,
    group_name=GROUP,
    kinds={"parquet"},
    description="Every file of the run directory with its size and mtime; the fingerprint that "
    "tells whether the run changed since it was last ingested.",
)
def raw_run_inventory(
    context: dg.AssetExecutionContext, evalpipe: EvalpipeHome
) -> dg.MaterializeResult:
    run_id = context.partition_key
    inventory = scan_run(evalpipe.run_dir(run_id))
    table = run_files_table(run_id, inventory)
    evalpipe.lake.write("run_files", run_id, table)
    files = pd.DataFrame(
        {"file": [f.name for f in inventory.files], "bytes": [f.size for f in inventory.files]}
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(table, evalpipe.lake.partition_file("run_files", run_id)),
            "source_dir": dg.MetadataValue.path(str(inventory.run_dir)),
            "fingerprint": inventory.fingerprint,
            "total_bytes": inventory.total_bytes,
            "files": markdown_preview(files, max_rows=50),
        }
    )


@dg.multi_asset(
    partitions_def=olmes_runs,
    group_name=GROUP,
    specs=[
        dg.AssetSpec(
            "runs",
            deps=["raw_run_inventory"],
            kinds={"parquet"},
            description="One row per run directory: model, revision, task and aggregate counts.",
        ),
        dg.AssetSpec(
            "task_results",
            deps=["raw_run_inventory"],
            kinds={"parquet"},
            description="One row per task of a run, aggregates included (from metrics-all.jsonl), "
            "plus tasks present only as artifact files (old dumps).",
        ),
        dg.AssetSpec(
            "task_metrics",
            deps=["raw_run_inventory"],
            kinds={"parquet"},
            description="One row per numeric entry of each task's `metrics` object.",
        ),
    ],
)
def run_task_tables(context: dg.AssetExecutionContext, evalpipe: EvalpipeHome):
    """Parse `metrics-all.jsonl` and the artifact index once, write the three task-level tables."""
    run_id = context.partition_key
    run_dir = evalpipe.run_dir(run_id)
    tables = build_run_tables(run_id, run_dir, fingerprint=scan_run(run_dir).fingerprint)
    for finding in tables.findings:
        context.log.warning(f"{finding.path}: {finding.message}")
    lake = evalpipe.lake
    for name in ("runs", "task_results", "task_metrics"):
        lake.write(name, run_id, getattr(tables, name))

    results = tables.task_results.to_pandas()
    aggregates = results.loc[
        results["is_aggregate"], ["task_name", "primary_metric", "primary_score", "num_instances"]
    ]
    yield dg.MaterializeResult(
        asset_key="runs",
        metadata={
            **table_metadata(tables.runs, lake.partition_file("runs", run_id)),
            "model": tables.runs["model"][0].as_py() or "",
            "duplicate_lines_dropped": tables.records.duplicates_dropped,
        },
    )
    yield dg.MaterializeResult(
        asset_key="task_results",
        metadata={
            **table_metadata(tables.task_results, lake.partition_file("task_results", run_id)),
            "tasks": len(tables.records.tasks),
            "aggregates": len(tables.records.aggregates),
            "artifact_only_tasks": int((results["source"] == "artifacts").sum()),
            "findings": len(tables.findings),
            "aggregate_scores": markdown_preview(aggregates),
        },
    )
    yield dg.MaterializeResult(
        asset_key="task_metrics",
        metadata=table_metadata(tables.task_metrics, lake.partition_file("task_metrics", run_id)),
    )


@dg.asset(
    partitions_def=olmes_runs,
    group_name=GROUP,
    deps=["raw_run_inventory"],
    kinds={"json"},
    description="Per-task -metrics.json / -config.json rebuilt from metrics-all.jsonl where the "
    "dump lacks them (reconstructed/<run_id>/); where it has them, every difference is reported.",
)
def reconstructed_artifacts(
    context: dg.AssetExecutionContext, evalpipe: EvalpipeHome
) -> dg.MaterializeResult:
    run_id = context.partition_key
    target = evalpipe.reconstructed_path / run_id
    report = reconstruct_run(read_run(evalpipe.run_dir(run_id)), target)
    for mismatch in report.mismatches:
        context.log.warning(f"{mismatch.path}: differs from metrics-all.jsonl ({mismatch.detail})")
    mismatches = pd.DataFrame(
        [(m.task_name, m.kind, m.path.name, m.detail) for m in report.mismatches],
        columns=["task_name", "kind", "file", "detail"],
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(target)),
            "files_written": len(report.written),
            "files_compared": report.compared,
            "mismatches": len(report.mismatches),
            "mismatch_details": markdown_preview(mismatches),
        }
    )
