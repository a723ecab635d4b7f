"""The archive and retention jobs end to end, as a user runs them: a real Dagster instance, the
CLI, runs and snapshots dated back months, and a policy that keeps one snapshot."""

import json
import os
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from evalpipe.cli import main
from evalpipe.core.config import Settings
from evalpipe.core.retention_policy import ArchivePolicy, RetentionPolicy
from evalpipe.definitions import build_definitions
from evalpipe.defs.registry import per_run_keys
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.retention.jobs import RETENTION_JOB, build_scope
from evalpipe.defs.runner import get_instance, ingest
from evalpipe.retention import archives_table
from evalpipe.retention.plan import apply_archive, restore_archive
from evalpipe.snapshots.manifests import (
    default_sources,
    list_snapshots,
    restore_snapshot,
    take_snapshot,
)
from evalpipe.storage.warehouse import query
from evalpipe_tests.retention.test_interruptions import age
from evalpipe_tests.snapshots.backends import digests

QUERIES = [
    "SELECT run_id, model, status, n_tasks FROM runs ORDER BY run_id",
    "SELECT run_id, task_name, primary_score FROM task_results ORDER BY ALL",
    "SELECT count(*) FROM predictions",
]
NOOP_POLICY = "[archive]\nafter_days = 100000\n[snapshots]\nkeep_last = 100\n"
KEEP_ONE_POLICY = """
[archive]
after_days = 30
delete_local = true

[snapshots]
keep_last = 1
keep_daily = 0
keep_weekly = 0
keep_monthly = 0

[dagster]
runs_older_than_days = 0
keep_last_per_job = 1
"""


@pytest.fixture
def home(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in {
        "EVALPIPE_HOME": settings.home,
        "EVALPIPE_DUMPS": settings.dumps,
        "EVALPIPE_SETTLE_SECONDS": "0",
        "DAGSTER_HOME": settings.dagster_home,
    }.items():
        monkeypatch.setenv(key, str(value))
    return settings


def answers(settings: Settings) -> list:
    return [query(settings.warehouse, sql)[1] for sql in QUERIES]


def snapshot_view(settings: Settings) -> dict[str, str]:
    """What a snapshot holds: dumps and lake, without hidden files (locks, writes in progress)."""
    return {
        f"{name}/{path}": sha
        for name, root in default_sources(settings).items()
        for path, sha in digests(root).items()
        if not any(part.startswith(".") for part in path.split("/"))
    }


def partition_state(instance: dg.DagsterInstance) -> dict:
    """Each per-run asset's materialized partitions and the run of its latest materialization."""
    state = {}
    for key in per_run_keys():
        latest = instance.get_latest_materialization_event(key)
        state[key.to_user_string()] = (
            sorted(instance.get_materialized_partitions(key)),
            latest.run_id if latest else None,
        )
    return state


def test_jobs_and_schedules_are_defined_and_running_by_default(home: Settings) -> None:
    defs = build_definitions(home)
    for job, schedule in (("archive", "weekly_archive"), ("retention", "daily_retention")):
        assert defs.resolve_job_def(job).name == job
        definition = defs.resolve_schedule_def(schedule)
        assert definition.job_name == job
        assert definition.default_status == dg.DefaultScheduleStatus.RUNNING


def test_a_policy_that_keeps_one_snapshot_archives_expires_sweeps_and_prunes(
    home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert main(["ingest"]) == 0
    age(home.dumps, 60)  # runs last changed two months ago
    # ...which changes the mtimes ingest fingerprinted: ingest again so the ledger matches
    assert main(["ingest"]) == 0
    originals = {p.parent: digests(p.parent) for p in home.dumps.rglob("metrics-all.jsonl")}
    before = answers(home)

    # three snapshots, with changes between them
    start = datetime.now(timezone.utc) - timedelta(days=3)
    ids = []
    for n in range(3):
        (home.lake / "notes.txt").write_text(f"change {n}\n" * 50)
        result = take_snapshot(
            default_sources(home), home.snapshot_target, now=start + timedelta(days=n)
        )
        ids.append(result.snapshot_id)
    kept_tree = snapshot_view(home)  # notes.txt as of the last snapshot
    snapshots_dir = home.home / "snapshots"
    age(snapshots_dir / "objects", 5)  # written days ago: past the 72 h grace period

    # Dagster runs that did no asset work (two per job), under a policy that changes nothing
    policy = tmp_path / "retention.toml"
    policy.write_text(NOOP_POLICY)
    monkeypatch.setenv("EVALPIPE_RETENTION_FILE", str(policy))
    defs = build_definitions(home)
    instance = get_instance(home)
    for _ in range(2):
        for job in ("archive", RETENTION_JOB):
            assert defs.resolve_job_def(job).execute_in_process(instance=instance).success
    status_before = partition_state(instance)
    capsys.readouterr()

    policy.write_text(KEEP_ONE_POLICY)
    assert main(["retention", "plan", "--format", "json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    by_action: dict[str, list[dict]] = {}
    for action in planned:
        assert set(action) == {"action", "target", "reason", "bytes"}
        by_action.setdefault(action["action"], []).append(action)
    assert sorted(a["target"] for a in by_action["archive"]) == sorted(map(str, originals))
    assert sorted(a["target"] for a in by_action["delete_local"]) == sorted(map(str, originals))
    assert sorted(a["target"] for a in by_action["expire_snapshot"]) == ids[:2]
    assert by_action["delete_object"], (
        "notes.txt of the first two snapshots is referenced by no kept one"
    )
    # the older retention run; archive runs materialize the `archives` table and stay
    assert len(by_action["delete_dagster_run"]) == 1
    assert all(os.path.isdir(d) for d in originals)  # planning changed nothing

    assert main(["retention", "apply", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "archive (Dagster run" in out and "retention (Dagster run" in out

    # local copies are gone, every archive restores byte-identical (mtimes included)
    assert not any(d.exists() for d in originals)
    assert main(["archive", "list", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == len(originals) and {a["local"] for a in listed} == {"deleted"}
    for entry in listed:
        dest = tmp_path / "restored" / entry["id"]
        assert main(["archive", "restore", entry["id"], "--to", str(dest)]) == 0
        assert digests(dest) == originals[home.dumps / entry["run_id"]]

    # the kept snapshot restores byte-identical; the expired ones are marked, their objects gone
    log = {e["version"]: e for e in list_snapshots(home.snapshot_target)}
    assert [v for v, e in log.items() if not e.get("expired")] == [ids[2]]
    restore_snapshot(home.snapshot_target, ids[2], tmp_path / "snap")
    assert digests(tmp_path / "snap") == kept_tree
    stored = {p.name for p in (snapshots_dir / "objects").rglob("*") if p.is_file()}
    gone = {a["target"].rsplit("/", 1)[1] for a in by_action["delete_object"]}
    assert gone and not gone & stored

    # Dagster: old runs without asset events are gone, partition status and lineage unchanged
    assert partition_state(instance) == status_before
    for action in by_action["delete_dagster_run"]:
        assert not instance.has_run(action["target"])

    # the warehouse answers as before, and says where each archived run lives;
    # ingest neither re-ingests nor drops the archived runs
    assert answers(home) == before
    located = "SELECT count(*) FROM runs r JOIN archives a USING (run_id) WHERE a.local_deleted_at IS NOT NULL"
    assert query(home.warehouse, located)[1] == [(len(originals),)]
    assert main(["ingest"]) == 0
    assert "0 run directories: 0 ingested" in capsys.readouterr().out
    assert answers(home) == before

    # restored where it was: byte-identical with the same mtimes, so not ingested again
    first = listed[0]
    assert main(["archive", "restore", first["id"]]) == 0
    assert digests(home.dumps / first["run_id"]) == originals[home.dumps / first["run_id"]]
    assert main(["ingest"]) == 0
    assert "0 ingested, 1 unchanged" in capsys.readouterr().out

    # applying the same policy again changes nothing (the restored run is archived already;
    # deleting it again is all there is)
    assert main(["retention", "plan", "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [a["action"] for a in again if a["action"] != "delete_dagster_run"] == ["delete_local"]


def test_the_sensor_sees_neither_an_archived_run_gone_nor_one_restored_as_new(
    settings: Settings,
) -> None:
    age(settings.dumps, 60)
    with dg.instance_for_test() as instance:
        ingest(build_definitions(settings), settings, instance, progress=lambda line: None)
        sensor = build_definitions(settings).resolve_sensor_def("olmes_sensor")
        resource = EvalpipeHome(
            home=str(settings.home), dumps=str(settings.dumps), settle_seconds=0
        )

        def tick() -> dg.SensorResult:
            context = dg.build_sensor_context(instance=instance, resources={"evalpipe": resource})
            return sensor(context)

        assert tick().run_requests == []
        policy = RetentionPolicy(
            archive=ArchivePolicy(target=(settings.home / "archive").as_uri(), delete_local=True)
        )
        scope = build_scope(resource, instance)
        scope = replace(scope, policy=policy)
        outcome = apply_archive(scope, progress=lambda line: None)
        assert outcome.counts()["delete_local"] == 4 and not outcome.refused
        assert tick().run_requests == []  # absence is not new or changed data
        row = archives_table.read_archives(scope.lake)[0]
        restore_archive(scope, row["archive_id"])
        assert tick().run_requests == []  # byte-identical, same mtimes: nothing to ingest


def test_the_instance_template_prunes_schedule_and_sensor_ticks(settings: Settings) -> None:
    instance = get_instance(settings)
    assert instance.get_settings("retention") == {
        "schedule": {"purge_after_days": 90},
        "sensor": {"purge_after_days": {"skipped": 7, "failure": 30, "success": -1}},
    }
