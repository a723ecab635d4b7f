"""Per-run assets materialize real lake partitions whose figures match the source files."""

import json
from pathlib import Path

import dagster as dg
import pytest

from evalpipe.core.config import Settings
from evalpipe.defs.olmes.assets import raw_run_inventory, run_task_tables
from evalpipe.defs.partitions import olmes_runs
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.runner import step_errors
from evalpipe.sources.olmes.reader import find_run_dirs, run_id_for
from evalpipe.storage.lake import Lake


def ordered(text: str):
    """Parse JSON keeping key order visible, so 'same value' includes 'same key order'."""
    return json.loads(text, object_pairs_hook=list)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def materialize_run(instance: dg.DagsterInstance, settings: Settings, run_id: str):
    instance.add_dynamic_partitions(olmes_runs.name, [run_id])
    return dg.materialize(
        [raw_run_inventory, run_task_tables],
        partition_key=run_id,
        instance=instance,
        resources={"evalpipe": EvalpipeHome.from_settings(settings)},
        raise_on_error=False,
    )


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
    assert set(by_key) == {"raw_run_inventory", "runs", "task_results", "task_metrics"}
    results = by_key["task_results"]
    assert results["dagster/row_count"].value > 0
    assert "primary_score" in [c.name for c in results["dagster/column_schema"].schema.columns]
    assert "core_9mcqa:rc::olmes:full" in results["aggregate_scores"].value
    assert len(by_key["raw_run_inventory"]["fingerprint"].value) == 16


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
        f"run_task_tables: {metrics_all}:3: malformed JSON at column 15: Unterminated string starting at"
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
    assert step_errors(result) == [
        f"run_task_tables: {empty}: run directory holds no task records and no predictions"
    ]
