"""The source sensor requests each complete, settled run once per state of its files, in
batches: one run request per contiguous range of pending partitions."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from evalpipe.core.config import Settings
from evalpipe.definitions import build_definitions
from evalpipe.defs.olmes.definitions import OLMES_DEFS
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
    return OLMES_DEFS.sensor(context)


def requested(instance: dg.DagsterInstance, result: dg.SensorResult) -> list[list[str]]:
    """The run ids of each requested batch, resolved against the partitions as they will be."""
    order = instance.get_dynamic_partitions(OLMES_DEFS.partitions.name)
    for request in result.dynamic_partitions_requests:
        order += [k for k in request.partition_keys if k not in order]
    batches = []
    for run in result.run_requests:
        first = order.index(run.tags[ASSET_PARTITION_RANGE_START_TAG])
        last = order.index(run.tags[ASSET_PARTITION_RANGE_END_TAG])
        batches.append(order[first : last + 1])
    return batches


def age(run_dir: Path, seconds: float) -> None:
    """Make every file of a run directory look last modified `seconds` ago."""
    stamp = time.time() - seconds
    for path in run_dir.iterdir():
        os.utime(path, (stamp, stamp))


def test_new_settled_run_directories_become_partitions_and_one_batch(instance, settings) -> None:
    result = evaluate(instance, settings)
    [batch] = requested(instance, result)
    assert len(batch) == 4
    assert sorted(result.dynamic_partitions_requests[0].partition_keys) == sorted(batch)
    assert result.run_requests[0].tags["evalpipe/batch"] == "4"
    again = evaluate(instance, settings)
    assert again.run_requests[0].run_key == result.run_requests[0].run_key, (
        "the same pending states make the same run key, so Dagster never launches them twice"
    )


def test_run_directories_still_being_written_wait_for_the_settle_time(instance, settings) -> None:
    for run_dir in find_run_dirs(settings.dumps):
        age(run_dir, 3600)
    fresh = find_run_dirs(settings.dumps)[0]
    (fresh / "metrics-all.jsonl").touch()
    half_written = settings.dumps / "2025-12-01_new" / "_eval_results" / "org_m__main"
    half_written.mkdir(parents=True)
    (half_written / "task-000-x-requests.jsonl").write_text("{}\n")

    result = evaluate(instance, settings, settle=30)
    ids = [r for batch in requested(instance, result) for r in batch]
    assert len(ids) == 3
    assert fresh.relative_to(settings.dumps).as_posix() not in ids
    assert json.loads(result.cursor)["settling"] == 1


def test_the_skip_reason_says_what_the_sensor_waits_for(instance, settings) -> None:
    result = evaluate(instance, settings, settle=3600)
    assert result.run_requests == []
    assert result.skip_reason.skip_message.startswith("4 run directories settling, newest change")


def test_unchanged_directories_are_not_requested_again_and_changed_ones_are(
    instance, settings
) -> None:
    report = ingest(build_definitions(settings), settings, instance, progress=lambda _: None)
    assert len(report.outcomes) == 4 and not report.failed
    assert report.batches == 1
    unchanged = evaluate(instance, settings)
    assert unchanged.run_requests == []
    assert "all unchanged since their last ingest" in unchanged.skip_reason.skip_message

    changed = find_run_dirs(settings.dumps)[1]
    with (changed / "metrics-all.jsonl").open("ab") as handle:
        handle.write(b"\n")
    result = evaluate(instance, settings)
    assert requested(instance, result) == [[changed.relative_to(settings.dumps).as_posix()]]
    assert result.dynamic_partitions_requests == []


def test_a_run_that_failed_is_not_requested_again_until_its_files_change(
    instance, settings
) -> None:
    bad = find_run_dirs(settings.dumps)[0]
    (bad / "metrics-all.jsonl").write_text('{"task_name": \n')
    report = ingest(build_definitions(settings), settings, instance, progress=lambda _: None)
    assert [o.run_id for o in report.failed] == [bad.relative_to(settings.dumps).as_posix()]
    assert evaluate(instance, settings).run_requests == [], "no hot loop on bad input"
    (bad / "metrics-all.jsonl").write_text("")
    assert requested(instance, evaluate(instance, settings)) == [
        [bad.relative_to(settings.dumps).as_posix()]
    ]


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
    assert sum(len(b) for b in requested(instance, result)) == 400
    assert len(result.run_requests) == 1
    assert len(result.cursor) < 120
    assert json.loads(result.cursor)["runs"] == 400


def test_missing_dumps_root_is_a_skip_with_a_reason(instance, settings, tmp_path) -> None:
    resource = EvalpipeHome(home=str(tmp_path), dumps=str(tmp_path / "nowhere"))
    context = dg.build_sensor_context(instance=instance, resources={"evalpipe": resource})
    assert "does not exist" in OLMES_DEFS.sensor(context).skip_message
