"""The per-run ingest job: every asset partitioned by run directory."""

import dagster as dg

from evalpipe.defs.partitions import olmes_runs

INGEST_GROUP = "olmes_ingest"

ingest_run_job = dg.define_asset_job(
    "ingest_run",
    selection=dg.AssetSelection.groups(INGEST_GROUP),
    partitions_def=olmes_runs,
    description="Ingest one run directory: its inventory and every per-run table.",
)
