"""The dump sensor requests each complete, settled run directory once per state of its files."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from evalpipe.core.config import Settings
from evalpipe.definitions import build_definitions
from evalpipe.defs.olmes.ingest_state import INGEST_KEY_TAG
from evalpipe.defs.olmes.sensors import olmes_dump_sensor
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.runner import ingest
from evalpipe.sources.olmes.reader import find_run_dirs


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def evaluate(
    instance: dg.DagsterInstance, settings: Settings, settle: float = 0.0
) -> dg.SensorResult:
    resource = EvalpipeHome(
        home=str(settings.home), dumps=str(settings.dumps), settle_seconds=settle
    )
    context = dg.build_sensor_context(instance=instance, resources={"evalpipe": resource})
    return olmes_dump_sensor(context)


def age(run_dir: Path, seconds: float) -> None:
    """Make every file of a run directory look last modified `seconds` ago."""
    stamp = time.time() - seconds
    for path in run_dir.iterdir():
        os.utime(path, (stamp, stamp))


def test_new_settled_run_directories_become_partitions_and_runs(instance, settings) -> None:
    result = evaluate(instance, settings)
    run_ids = sorted(r.partition_key for r in result.run_requests)
    assert len(run_ids) == 4
    assert sorted(result.dynamic_partitions_requests[0].partition_keys) == run_ids
    assert all(r.run_key == r.tags[INGEST_KEY_TAG] for r in result.run_requests)


def test_run_directories_still_being_written_wait_for_the_settle_time(instance, settings) -> None:
    for run_dir in find_run_dirs(settings.dumps):
        age(run_dir, 3600)
    fresh = find_run_dirs(settings.dumps)[0]
    (fresh / "metrics-all.jsonl").touch()
    half_written = settings.dumps / "2025-12-01_new" / "_eval_results" / "org_m__main"
    half_written.mkdir(parents=True)
    (half_written / "task-000-x-requests.jsonl").write_text("{}\n")

    result = evaluate(instance, settings, settle=30)
    requested = {r.partition_key for r in result.run_requests}
    assert len(requested) == 3
    assert fresh.relative_to(settings.dumps).as_posix() not in requested
    assert json.loads(result.cursor)["settling"] == 1


def test_unchanged_directories_are_not_requested_again_and_changed_ones_are(
    instance, settings
) -> None:
    report = ingest(build_definitions(settings), settings, instance, progress=lambda _: None)
    assert len(report.outcomes) == 4 and not report.failed
    assert evaluate(instance, settings).run_requests == []

    changed = find_run_dirs(settings.dumps)[1]
    with (changed / "metrics-all.jsonl").open("ab") as handle:
        handle.write(b"\n")
    result = evaluate(instance, settings)
    assert [r.partition_key for r in result.run_requests] == [
        changed.relative_to(settings.dumps).as_posix()
    ]
    assert result.dynamic_partitions_requests == []


def test_cursor_does_not_grow_with_the_number_of_run_directories(instance, tmp_path) -> None:
    root = tmp_path / "many"
    line = json.dumps({"task_name": "t", "task_idx": 0, "metrics": {"primary_score": 0.5}})
    for i in range(400):
        run_dir = root / f"dump_{i // 100}" / f"org_model{i}__main"
        run_dir.mkdir(parents=True)
        (run_dir / "metrics-all.jsonl").write_text(line + "\n")
    settings = Settings(
        home=tmp_path / "home",
        dumps=root,
        settle_seconds=0,
        snapshot_target="",
        dagster_home=tmp_path / "dh",
        suites_file=None,
    )
    result = evaluate(instance, settings)
    assert len(result.run_requests) == 400
    assert len(result.cursor) < 120
    assert json.loads(result.cursor)["run_dirs"] == 400


def test_missing_dumps_root_is_a_skip_with_a_reason(instance, settings, tmp_path) -> None:
    resource = EvalpipeHome(home=str(tmp_path), dumps=str(tmp_path / "nowhere"))
    context = dg.build_sensor_context(instance=instance, resources={"evalpipe": resource})
    assert "does not exist" in olmes_dump_sensor(context).skip_message
