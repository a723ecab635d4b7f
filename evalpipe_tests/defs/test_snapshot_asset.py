"""The snapshot asset and CLI, against file:// and a real S3 endpoint (moto's server, over HTTP)."""

import hashlib
import json
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from evalpipe.cli import main
from evalpipe.core.config import Settings
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.snapshots.assets import snapshot
from evalpipe_tests.s3_server import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, moto_s3


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
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
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
        assert main([*args, "verify", snapshot_id]) == 0
        assert main([*args, "list", "--format", "json"]) == 0
        output = capsys.readouterr()
    for name in ("dumps", "lake", "reconstructed"):
        source = getattr(ingested, name) if name != "reconstructed" else ingested.reconstructed
        assert tree_digest(restored / name) == tree_digest(source), name
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
