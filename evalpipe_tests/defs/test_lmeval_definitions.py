"""lm-eval in Dagster: registered once, its sensor watches EVALPIPE_LMEVAL (settling, batches),
its ingest job records each run's tables and check results on that run's partition, and the
W&B sink stays skipped (saying why) unless EVALPIPE_WANDB_PROJECT is set."""

import dagster as dg

from evalpipe.core.config import Settings
from evalpipe.definitions import REFRESH_JOB, build_definitions
from evalpipe.defs.lmeval.definitions import LMEVAL_DEFS
from evalpipe.defs.registry import SOURCE_DEFS
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.sources import range_tags
from evalpipe.defs.wandb.assets import SKIPPED
from evalpipe.sources.lmeval.checks import PER_RUN_CHECKS
from evalpipe_tests.lmeval_outputs import run_ids


def sensor_result(instance: dg.DagsterInstance, settings: Settings) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, resources={"evalpipe": EvalpipeHome.from_settings(settings)}
    )
    return LMEVAL_DEFS.sensor(context)


def test_sensor_waits_for_settled_results_then_requests_one_batch(
    lmeval_settings: Settings,
) -> None:
    assert LMEVAL_DEFS in SOURCE_DEFS
    assert (LMEVAL_DEFS.sensor.name, LMEVAL_DEFS.job.name) == ("lmeval_sensor", "lmeval_ingest")
    ids = list(run_ids(lmeval_settings.lmeval).values())
    settling = Settings(**{**lmeval_settings.__dict__, "settle_seconds": 3600.0})
    with dg.instance_for_test() as instance:
        waiting = sensor_result(instance, settling)
        assert not waiting.run_requests
        assert f"{len(ids)} run directories settling" in waiting.skip_reason.skip_message
        result = sensor_result(instance, lmeval_settings)
        [request] = result.run_requests
        assert result.dynamic_partitions_requests[0].partition_keys == ids
        assert request.tags == {**request.tags, **range_tags(ids[0], ids[-1], len(ids))}


def test_ingest_job_records_checks_per_run_and_the_wandb_sink_skips(
    lmeval_settings: Settings,
) -> None:
    ids = list(run_ids(lmeval_settings.lmeval).values())
    defs = build_definitions(lmeval_settings)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(LMEVAL_DEFS.partitions.name, ids)
        result = defs.resolve_job_def("lmeval_ingest").execute_in_process(
            instance=instance, tags=range_tags(ids[0], ids[-1], len(ids))
        )
        assert result.success
        key = dg.AssetKey(["lmeval", "task_results"])
        assert instance.get_materialized_partitions(key) == set(ids)
        for run_id in ids:
            status = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey(["lmeval", "run_status"]), asset_partitions=[run_id]
                ),
                limit=1,
            ).records[0]
            assert status.asset_materialization.metadata["status"].value == "ok"
        evaluations = [
            e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        assert len(evaluations) == len(PER_RUN_CHECKS) * len(ids)
        assert all(e.passed for e in evaluations)

        assert lmeval_settings.wandb_project is None
        refresh = defs.resolve_job_def(REFRESH_JOB).execute_in_process(instance=instance)
        assert refresh.success
        [sink] = refresh.asset_materializations_for_node("wandb_runs")
        assert sink.metadata["status"].value == "skipped"
        assert sink.metadata["reason"].value == SKIPPED
