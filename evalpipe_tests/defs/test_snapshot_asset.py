"""The snapshot asset and CLI, against file:// and a real S3 endpoint (moto's server, over HTTP)."""

import hashlib
import json
import os
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from evalpipe.cli import main
from evalpipe.core.config import Settings
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.snapshots.assets import snapshot
from evalpipe_tests.s3_server import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, moto_s3

ENDPOINT_PASSWORD = "endpoint-password-0042"


@pytest.fixture
def ingested(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in {
        "EVALPIPE_HOME": settings.home,
        "EVALPIPE_DUMPS": settings.dumps,
        "EVALPIPE_SETTLE_SECONDS": "0",
        "DAGSTER_HOME": settings.dagster_home,
    }.items():
        monkeypatch.setenv(key, str(value))
    assert main(["ingest"]) == 0
    return settings


def tree_digest(root: Path) -> dict[str, str]:
    """Every file a snapshot stores: hidden ones (run locks, writes in progress) are left out."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def materialize_snapshot(settings: Settings, target: str, instance: dg.DagsterInstance):
    resource = EvalpipeHome(
        home=str(settings.home), dumps=str(settings.dumps), snapshot_target=target
    )
    return dg.materialize(
        [snapshot],
        instance=instance,
        resources={"evalpipe": resource, "s3": S3Resource()},
        run_config={"ops": {"snapshot": {"config": {"note": "from a test"}}}},
    )


def test_asset_snapshots_to_s3_and_the_cli_restores_a_byte_identical_tree(
    ingested: Settings, tmp_path: Path, capsys, caplog
) -> None:
    with moto_s3() as s3, dg.instance_for_test() as instance:
        result = materialize_snapshot(ingested, s3.url("evalpipe"), instance)
        metadata = result.asset_materializations_for_node("snapshot")[0].metadata
        assert metadata["files"].value > 0 and metadata["files_uploaded"].value > 0
        assert s3.keys("evalpipe/objects/"), "data objects are stored under the prefix"

        again = materialize_snapshot(ingested, s3.url("evalpipe"), instance)
        second = again.asset_materializations_for_node("snapshot")[0].metadata
        assert second["files_uploaded"].value == 0, "nothing changed: no data file uploaded"

        capsys.readouterr()
        snapshot_id = metadata["snapshot_id"].value
        restored = tmp_path / "restored"
        args = ["snapshots", "--target", s3.url("evalpipe")]
        assert main([*args, "restore", snapshot_id, "--to", str(restored)]) == 0
        assert main([*args, "verify", snapshot_id, "--format", "json"]) == 0
        assert main([*args, "list", "--format", "json"]) == 0
        output = capsys.readouterr()
    for name in ("dumps", "lake"):
        assert tree_digest(restored / name) == tree_digest(getattr(ingested, name)), name
    listed = json.loads(output.out.split("\n}\n", 1)[1])
    assert [e["version"] for e in listed][-1] == second["snapshot_id"].value
    everything = output.out + output.err + caplog.text + json.dumps(str(metadata))
    assert TEST_SECRET_ACCESS_KEY not in everything and TEST_ACCESS_KEY_ID not in everything


def test_cli_snapshot_materializes_the_asset_in_the_instance_and_diffs(
    ingested: Settings, capsys
) -> None:
    assert main(["snapshot", "--note", "first"]) == 0
    first = capsys.readouterr().out.split()[1]
    changed = next(ingested.dumps.rglob("metrics-all.jsonl"))
    changed.write_bytes(changed.read_bytes() + b"\n")
    assert main(["snapshot", "--note", "second"]) == 0
    out = capsys.readouterr().out
    second = out.split()[1]
    assert "uploaded 1 files" in out

    assert main(["snapshots", "diff", first, second, "--format", "json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff == [{"change": "changed", "path": f"dumps/{changed.relative_to(ingested.dumps)}"}]

    with dg.instance_for_test(temp_dir=str(ingested.dagster_home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("snapshot"))
        run = instance.get_run_by_id(event.run_id)
    assert event.asset_materialization.metadata["snapshot_id"].value == second
    assert run is not None and run.job_name == "snapshot_job", "a real run, not a runless event"


def test_dry_run_stores_nothing(ingested: Settings, capsys) -> None:
    assert main(["snapshot", "--dry-run"]) == 0
    assert "would upload" in capsys.readouterr().out
    assert not (ingested.home / "snapshots").exists()


def test_no_snapshot_command_or_asset_run_shows_credentials_of_the_endpoint_url(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """AWS_ENDPOINT_URL embeds user:password and nothing listens there. Botocore quotes the URL
    in its "could not connect" error; every snapshot command prints it redacted, and the failed
    asset run (logs and stored events in the instance) holds no trace of the password either."""
    for key, value in {
        "EVALPIPE_HOME": settings.home,
        "EVALPIPE_DUMPS": settings.dumps,
        "DAGSTER_HOME": settings.dagster_home,
        "AWS_ENDPOINT_URL": f"http://evalpipe:{ENDPOINT_PASSWORD}@127.0.0.1:9/",
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }.items():
        monkeypatch.setenv(key, str(value))
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    target = ["--target", "s3://evalpipe-test/snapshots"]
    commands = [
        ["snapshot", *target, "--dry-run"],
        ["snapshot", *target],
        ["snapshots", *target, "list"],
        ["snapshots", *target, "verify"],
        ["snapshots", *target, "restore", "202503141509", "--to", str(tmp_path / "out")],
        ["snapshots", *target, "diff", "202503141509", "202503141510"],
    ]
    printed = []
    for argv in commands:
        assert main(argv) == 1, argv
        out = capsys.readouterr()
        assert "http://***@127.0.0.1:9/" in out.err, (argv, out.err)
        printed += [out.out, out.err]
    with dg.instance_for_test(temp_dir=str(settings.dagster_home)) as instance:
        [run] = instance.get_runs()
        events = [str(event) for event in instance.all_logs(run.run_id)]
    assert any("http://***@127.0.0.1:9/" in event for event in events)
    everything = "\n".join([*printed, *events, caplog.text])
    assert ENDPOINT_PASSWORD not in everything
