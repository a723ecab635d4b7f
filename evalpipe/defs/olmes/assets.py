"""Per-run assets for OLMES dumps: the raw inventory and the task-level tables.

Thin by design: reading and table building live in `evalpipe.formats` / `evalpipe.run_tables`;
these functions write the lake partition and report what a person wants to see in the UI.
"""

import dagster as dg
import pandas as pd

from evalpipe.defs.metadata import column_schema, markdown_preview, table_metadata
from evalpipe.defs.olmes.jobs import INGEST_GROUP
from evalpipe.defs.partitions import olmes_runs
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.formats.olmes import index_task_files, read_run, scan_run
from evalpipe.instance_tables import ingest_instances
from evalpipe.lake import SCHEMAS
from evalpipe.reconstruct import reconstruct_run
from evalpipe.run_tables import build_run_tables, run_files_table, task_choices_table

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


INSTANCE_TABLES = {
    "predictions": "One row per document: per-instance metrics and model output (JSON text).",
    "requests": "One row per request sent to the model (several per document).",
    "recorded_inputs": "The recorded prompts of the first documents of each task.",
}


@dg.multi_asset(
    partitions_def=olmes_runs,
    group_name=GROUP,
    specs=[
        *(
            dg.AssetSpec(name, deps=["raw_run_inventory"], kinds={"parquet"}, description=text)
            for name, text in INSTANCE_TABLES.items()
        ),
        dg.AssetSpec(
            "task_choices",
            deps=["raw_run_inventory"],
            kinds={"parquet"},
            description="Answer choices per task (0 for generative tasks), for chance levels.",
        ),
    ],
)
def instance_tables(context: dg.AssetExecutionContext, evalpipe: EvalpipeHome):
    """Stream every per-instance file of the run into the lake, all three tables or none."""
    run_id = context.partition_key
    run_dir = evalpipe.run_dir(run_id)
    report = ingest_instances(run_id, run_dir, evalpipe.lake, progress=context.log.info)
    for finding in report.findings:
        context.log.warning(f"{finding.path}: {finding.message}")
    lake = evalpipe.lake
    context.log.info(
        f"{report.bytes_read / 1e6:.1f} MB in {report.seconds:.1f}s "
        f"({report.mb_per_second:.0f} MB/s, {report.workers} workers)"
    )
    for table in INSTANCE_TABLES:
        per_task = pd.DataFrame(
            sorted(report.rows.get(table, {}).items()), columns=["task_name", "rows"]
        )
        yield dg.MaterializeResult(
            asset_key=table,
            metadata={
                "dagster/row_count": report.table_rows.get(table, 0),
                "dagster/column_schema": column_schema(SCHEMAS[table]),
                "path": dg.MetadataValue.path(str(lake.partition_file(table, run_id))),
                "rows_per_task": markdown_preview(per_task, max_rows=100),
                "mb_per_second": round(report.mb_per_second, 1),
            },
        )
    choices = task_choices_table(run_id, index_task_files(run_dir)[0])
    lake.write("task_choices", run_id, choices)
    yield dg.MaterializeResult(
        asset_key="task_choices",
        metadata=table_metadata(choices, lake.partition_file("task_choices", run_id)),
    )
