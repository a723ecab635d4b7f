"""The dump sensor: new or changed run directories become partitions and ingest runs."""

import json
import time

import dagster as dg

from evalpipe.defs.olmes.ingest_state import ingest_tags, pending_scans
from evalpipe.defs.olmes.jobs import ingest_run_job
from evalpipe.defs.partitions import olmes_runs
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.formats.olmes import scan_dumps


@dg.sensor(
    job=ingest_run_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches EVALPIPE_DUMPS; ingests a run directory once it is complete and no "
    "file has changed for EVALPIPE_SETTLE_SECONDS, and again whenever its files change.",
)
def olmes_dump_sensor(
    context: dg.SensorEvaluationContext, evalpipe: EvalpipeHome
) -> dg.SensorResult:
    if not evalpipe.dumps_path.is_dir():
        return dg.SkipReason(
            f"dumps root {evalpipe.dumps_path} does not exist (set EVALPIPE_DUMPS)"
        )
    now = time.time()
    scans = scan_dumps(evalpipe.dumps_path)
    settled = [s for s in scans if s.inventory.settled(now, evalpipe.settle_seconds)]
    pending = pending_scans(context.instance, settled, retry_failed=False)
    known = set(context.instance.get_dynamic_partitions(olmes_runs.name))
    new_keys = [s.run_id for s in pending if s.run_id not in known]
    cursor = {"run_dirs": len(scans), "settling": len(scans) - len(settled), "scanned_at": now}
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=s.ingest_key, partition_key=s.run_id, tags=ingest_tags(s))
            for s in pending
        ],
        dynamic_partitions_requests=[olmes_runs.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps(cursor),
    )
