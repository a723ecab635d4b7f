"""A source's batched ingest step: each run of a partition range gets real lake partitions
whose figures match its files, its own materializations and check results, and a bad run fails
alone while the rest of its batch lands."""

import json
from pathlib import Path

import dagster as dg
import pytest

from evalpipe.core.config import Settings
from evalpipe.definitions import build_definitions
from evalpipe.defs.ingest_state import FAILED, last_attempts
from evalpipe.defs.olmes.definitions import OLMES_DEFS
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.runner import ingest, step_errors
from evalpipe.defs.sources import contiguous_ranges, range_tags
from evalpipe.sources.olmes.reader import find_run_dirs, run_id_for
from evalpipe.storage.lake import Lake


def ordered(text: str):
    """Parse JSON keeping key order visible, so 'same value' includes 'same key order'."""
    return json.loads(text, object_pairs_hook=list)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def materialize_runs(instance: dg.DagsterInstance, settings: Settings, run_ids: list[str]):
    """One Dagster run over the partition range holding exactly `run_ids` (in that order)."""
    known = instance.get_dynamic_partitions(OLMES_DEFS.partitions.name)
    instance.add_dynamic_partitions(
        OLMES_DEFS.partitions.name, [r for r in run_ids if r not in known]
    )
    return dg.materialize(
        [OLMES_DEFS.assets],
        instance=instance,
        tags=range_tags(run_ids[0], run_ids[-1], len(run_ids)),
        resources={"evalpipe": EvalpipeHome.from_settings(settings)},
        raise_on_error=False,
    )


def materialize_run(instance: dg.DagsterInstance, settings: Settings, run_id: str):
    return materialize_runs(instance, settings, [run_id])


def all_run_ids(settings: Settings) -> list[str]:
    return [run_id_for(settings.dumps, d) for d in find_run_dirs(settings.dumps)]


def test_task_results_match_metrics_all_line_by_line(instance, settings: Settings) -> None:
    for run_dir in find_run_dirs(settings.dumps):
        run_id = run_id_for(settings.dumps, run_dir)
        assert materialize_run(instance, settings, run_id).success
        rows = {
            r["task_name"]: r for r in Lake(settings.lake).read("task_results", run_id).to_pylist()
        }
        source = {}
        for line in (run_dir / "metrics-all.jsonl").read_text(encoding="utf-8").splitlines():
            source.setdefault(json.loads(line)["task_name"], line)
        for name, line in source.items():
            record, row = json.loads(line), rows[name]
            assert row["primary_score"] == record["metrics"]["primary_score"]
            assert row["num_instances"] == record["num_instances"]
            assert row["task_idx"] == record["task_idx"]
            assert row["is_aggregate"] == (record["task_idx"] is None)
            assert row["primary_metric"] == record["task_config"]["primary_metric"]
            for column in (
                "model_config",
                "task_config",
                "compute_config",
                "beaker_info",
                "metrics",
            ):
                assert ordered(row[column]) == ordered(json.dumps(record[column])), column
            assert row["evaluated_at"].strftime("%Y-%m-%d %H:%M:%S UTC") == record["current_date"]
        metrics = Lake(settings.lake).read("task_metrics", run_id).to_pylist()
        expected = sum(
            sum(1 for v in json.loads(line)["metrics"].values() if isinstance(v, float | int))
            for line in source.values()
        )
        assert len(metrics) == expected


def test_materialization_reports_counts_schema_and_aggregate_preview(instance, settings) -> None:
    run_id = run_id_for(settings.dumps, find_run_dirs(settings.dumps)[0])
    result = materialize_run(instance, settings, run_id)
    by_key = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.get_asset_materialization_events()
        for m in [m.materialization]
    }
    assert set(by_key) == {f"olmes/{a.name}" for a in OLMES_DEFS.source.assets} | {
        "olmes/run_status"
    }
    assert by_key["olmes/run_status"]["status"].value == "ok"
    results = by_key["olmes/task_results"]
    assert results["dagster/row_count"].value > 0
    assert "primary_score" in [c.name for c in results["dagster/column_schema"].schema.columns]
    assert "core_9mcqa:rc::olmes:full" in results["aggregate_scores"].value
    assert len(by_key["olmes/raw_run_inventory"]["fingerprint"].value) == 16


def test_a_malformed_file_fails_its_partition_and_keeps_the_previous_one(
    instance, settings
) -> None:
    good, bad = (run_id_for(settings.dumps, d) for d in find_run_dirs(settings.dumps)[:2])
    assert materialize_run(instance, settings, bad).success
    before = Lake(settings.lake).read("task_results", bad)
    metrics_all = settings.dumps / bad / "metrics-all.jsonl"
    lines = metrics_all.read_bytes().split(b"\n")
    lines[2] = lines[2][:40]
    metrics_all.write_bytes(b"\n".join(lines))

    failed = materialize_run(instance, settings, bad)
    assert not failed.success
    assert step_errors(failed) == [
        "olmes_run: 1 of 1 runs failed (the others were ingested):\n"
        f"{bad}: {metrics_all}:3: malformed JSON at column 15: Unterminated string starting at"
    ]
    assert Lake(settings.lake).read("task_results", bad).equals(before)
    assert materialize_run(instance, settings, good).success


def test_a_run_directory_with_no_records_fails_with_its_path(
    instance, settings, tmp_path: Path
) -> None:
    empty = settings.dumps / "2025-12-01_x" / "_eval_results" / "org_m__main"
    empty.mkdir(parents=True)
    (empty / "metrics-all.jsonl").write_bytes(b"")
    result = materialize_run(instance, settings, run_id_for(settings.dumps, empty))
    assert not result.success
    run_id = run_id_for(settings.dumps, empty)
    assert step_errors(result) == [
        "olmes_run: 1 of 1 runs failed (the others were ingested):\n"
        f"{run_id}: {empty}: run directory holds no task records and no predictions"
    ]


def test_a_batch_ingests_every_run_in_one_step_with_per_partition_events(
    instance, settings
) -> None:
    run_ids = all_run_ids(settings)
    result = materialize_runs(instance, settings, run_ids)
    assert result.success
    steps = {e.step_key for e in result.all_events if e.step_key}
    assert steps == {"olmes_run"}, "one step, however many runs"
    status = dg.AssetKey(["olmes", "run_status"])
    assert instance.get_materialized_partitions(status) == set(run_ids)
    check = dg.AssetCheckKey(dg.AssetKey(["olmes", "task_results"]), "task_rows_match_source")
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
    assert sorted(h.partition for h in history) == sorted(run_ids)
    attempts = last_attempts(instance, "olmes", run_ids)
    assert {a.outcome for a in attempts.values()} == {"ok"}


def test_one_bad_run_fails_alone_and_the_rest_of_its_batch_lands(instance, settings) -> None:
    run_ids = all_run_ids(settings)
    bad = run_ids[1]
    predictions = sorted((settings.dumps / bad).glob("task-*-predictions.jsonl"))[0]
    predictions.write_bytes(predictions.read_bytes() + b'{"doc_id": 1, "oops"\n')

    result = materialize_runs(instance, settings, run_ids)
    assert not result.success
    [message] = step_errors(result)
    assert message.startswith("olmes_run: 1 of 4 runs failed (the others were ingested):")
    assert f"{bad}: {predictions}:" in message
    materialized = instance.get_materialized_partitions(dg.AssetKey(["olmes", "task_results"]))
    assert materialized == set(run_ids) - {bad}
    assert Lake(settings.lake).run_ids("task_results") == sorted(set(run_ids) - {bad})
    attempts = last_attempts(instance, "olmes", run_ids)
    assert attempts[bad].outcome == FAILED and str(predictions) in attempts[bad].error


def test_contiguous_ranges_cover_exactly_the_wanted_keys_in_bounded_batches() -> None:
    order = list("abcdefgh")
    assert contiguous_ranges(order, set("bcdfg")) == [("b", "d", 3), ("f", "g", 2)]
    assert contiguous_ranges(order, set(order), limit=3) == [
        ("a", "c", 3),
        ("d", "f", 3),
        ("g", "h", 2),
    ]
    assert contiguous_ranges(order, set()) == []


def test_a_run_quarantined_by_a_sensor_launched_batch_is_not_reingested_by_the_cli(
    instance, settings
) -> None:
    run_ids = all_run_ids(settings)
    metrics_all = settings.dumps / run_ids[0] / "metrics-all.jsonl"
    lines = [json.loads(line) for line in metrics_all.read_text().splitlines() if line]
    for record in lines:
        record["metrics"]["primary_score"] = 3.5
    metrics_all.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert materialize_runs(instance, settings, run_ids).success, "what a sensor run does"
    assert last_attempts(instance, "olmes", run_ids)[run_ids[0]].outcome == "quarantined"

    report = ingest(build_definitions(settings), settings, instance, progress=lambda _: None)
    assert report.outcomes == [] and report.skipped_unchanged == 4
