"""Snapshots against a file:// directory and against moto's S3 server over real HTTP."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from datetime import timedelta
from pathlib import Path

import pytest

from evalpipe.core.config import load_settings
from evalpipe.snapshots.manifests import (
    ProgressEvent,
    SnapshotError,
    diff_snapshots,
    list_snapshots,
    manifest_key,
    object_key,
    restore_snapshot,
    take_snapshot,
    verify_snapshot,
)
from evalpipe.snapshots.store import MiB, SnapshotTarget
from evalpipe_tests.s3_server import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, moto_s3
from evalpipe_tests.snapshots.backends import (
    BASE_ID,
    BIG,
    NOW,
    PREDICTIONS,
    Backend,
    digests,
    make_tree,
    snapshot,
)

STATS = {"runs_per_model": {"olmo-7b": 1}, "tasks": 2, "instances": 300}


def test_target_urls_parse_and_bad_ones_are_rejected(tmp_path: Path) -> None:
    default = load_settings({"EVALPIPE_HOME": str(tmp_path)}).snapshot_target
    assert SnapshotTarget.parse(default) == SnapshotTarget("file", str(tmp_path / "snapshots"))
    assert SnapshotTarget.parse("s3://bucket/a/b/") == SnapshotTarget("s3", "bucket", "a/b")
    assert SnapshotTarget.parse("s3://bucket").url == "s3://bucket"
    for bad in ("snapshots", "file://relative/x", "http://host/x", "s3://", "gs://b/p"):
        with pytest.raises(ValueError, match="accepted forms"):
            SnapshotTarget.parse(bad)
    with pytest.raises(ValueError, match="must not embed credentials") as err:
        SnapshotTarget.parse("s3://AKIDEXAMPLE:hunter2@bucket/p")
    assert "hunter2" not in str(err.value)


def test_round_trip_restores_a_byte_identical_tree(backend: Backend, tmp_path: Path) -> None:
    sources = make_tree(tmp_path / "home", big=True)
    sources["warehouse-cache"] = tmp_path / "home" / "not-there"
    multipart: list[str] = []
    if backend.s3:
        backend.s3.client.meta.events.register(
            "before-parameter-build.s3.CreateMultipartUpload",
            lambda params, **_: multipart.append(params["Key"]),
        )
    events: list[ProgressEvent] = []

    result = snapshot(sources, backend, note="first", stats=STATS, progress=events.append)

    assert result.snapshot_id == BASE_ID
    assert result.uri == f"{backend.url}/snapshots/{BASE_ID}/manifest.json"
    assert (result.files, result.missing_sources) == (7, ("warehouse-cache",))
    assert result.files_uploaded == 6  # the duplicate parquet is stored once
    assert result.bytes_uploaded + result.bytes_reused == result.bytes_total
    manifest = json.loads(backend.read(manifest_key(BASE_ID)))
    assert manifest == result.manifest
    assert manifest["stats"] == STATS and manifest["note"] == "first"
    assert manifest["totals"] == {"files": 7, "bytes": result.bytes_total, "objects": 6}
    assert {e["path"] for e in manifest["files"]} == set(digests(tmp_path / "home"))
    assert {"version", "date", "uri", "size_mb", "timestamp"} <= manifest.keys()
    if backend.s3:  # the 20 MiB file, and only it, went up in parts
        big_sha = hashlib.sha256((tmp_path / "home" / BIG).read_bytes()).hexdigest()
        assert multipart == [f"{backend.prefix}{object_key(big_sha)}"]
    stages = {e.stage for e in events}
    assert {"hash", "upload", "stored", "manifest", "latest", "versions", "done"} <= stages

    [entry] = list_snapshots(backend.url, client=backend.client)
    assert entry["version"] == BASE_ID and entry["latest"] and entry["files"] == 7
    assert verify_snapshot(backend.url, client=backend.client).ok

    restored = restore_snapshot(backend.url, BASE_ID, tmp_path / "restored", client=backend.client)
    assert restored.files == 7
    assert digests(tmp_path / "restored") == digests(tmp_path / "home")
    with pytest.raises(SnapshotError, match="absent or an empty directory"):
        restore_snapshot(backend.url, BASE_ID, tmp_path / "restored", client=backend.client)


def test_unchanged_files_are_never_uploaded_twice(backend: Backend, tmp_path: Path) -> None:
    home = tmp_path / "home"
    sources = make_tree(home, big=True)
    first = snapshot(sources, backend)

    writes = backend.watch_object_writes()
    same = snapshot(sources, backend, note="nothing changed")
    assert same.snapshot_id == f"{BASE_ID}-2"
    assert (same.files_uploaded, same.bytes_uploaded) == (0, 0)
    assert same.bytes_reused == first.bytes_total
    assert writes() == set()

    (home / PREDICTIONS).write_bytes(b'{"doc_id": 1, "pred": "B"}\n' * 300)
    writes = backend.watch_object_writes()
    changed = snapshot(sources, backend, note="one prediction changed")
    new_sha = hashlib.sha256((home / PREDICTIONS).read_bytes()).hexdigest()
    assert (changed.snapshot_id, changed.files_uploaded) == (f"{BASE_ID}-3", 1)
    assert changed.bytes_uploaded == (home / PREDICTIONS).stat().st_size
    assert writes() == {object_key(new_sha)}

    diff = diff_snapshots(backend.url, same.snapshot_id, changed.snapshot_id, client=backend.client)
    assert (diff.added, diff.removed, diff.changed) == ((), (), (PREDICTIONS,))
    assert diff.unchanged_count == 6
    versions = list_snapshots(backend.url, client=backend.client)
    assert [v["version"] for v in versions if v["latest"]] == [changed.snapshot_id]
    assert [v["note"] for v in versions] == ["", "nothing changed", "one prediction changed"]


def test_dry_run_plans_but_writes_nothing(backend: Backend, tmp_path: Path) -> None:
    result = snapshot(make_tree(tmp_path / "home"), backend, dry_run=True)
    assert result.dry_run and result.snapshot_id == BASE_ID
    assert result.files_uploaded == 5 and result.bytes_reused == 40_000
    assert backend.stored() == {}


def test_writes_in_progress_and_commit_journals_are_not_snapshotted(tmp_path: Path) -> None:
    """Hidden entries are a partition being written (`.data.parquet.<id>.partial`) or a commit's
    journal (`lake/.commits/`): half-written or transient, never part of the state."""
    sources = make_tree(tmp_path / "home")
    in_progress = {
        "lake/results/model=olmo-7b/.part-1.parquet.0a1b.partial": b"half a file",
        "lake/.commits/0a1b.json": b'{"renames": []}',
    }
    for rel, data in in_progress.items():
        (tmp_path / "home" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "home" / rel).write_bytes(data)
    store = tmp_path / "store"
    result = take_snapshot(sources, store.as_uri(), now=NOW, dry_run=True)
    assert result.files == 6
    assert not {e["path"] for e in result.manifest["files"]} & {rel for rel in in_progress}


def test_verify_finds_corrupted_and_missing_objects(backend: Backend, tmp_path: Path) -> None:
    home = tmp_path / "home"
    snapshot(make_tree(home), backend)
    victim, gone = PREDICTIONS, "reconstructed/olmo-7b/metrics-all.jsonl"
    victim_key = object_key(hashlib.sha256((home / victim).read_bytes()).hexdigest())
    flipped = bytearray(backend.read(victim_key))
    flipped[10] ^= 0xFF  # same size: only re-hashing can notice
    backend.write(victim_key, bytes(flipped))
    backend.delete(object_key(hashlib.sha256((home / gone).read_bytes()).hexdigest()))

    report = verify_snapshot(backend.url, BASE_ID, client=backend.client)
    assert not report.ok and report.manifest_ok and report.checked == 6
    assert (report.corrupted, report.missing) == ((victim,), (gone,))
    with pytest.raises(SnapshotError, match="incomplete"):
        restore_snapshot(backend.url, BASE_ID, tmp_path / "out", client=backend.client)

    backend.write(manifest_key(BASE_ID), backend.read(manifest_key(BASE_ID)) + b" ")
    assert not verify_snapshot(backend.url, client=backend.client).manifest_ok
    with pytest.raises(SnapshotError, match=r"manifest of snapshot \d+ is corrupted"):
        restore_snapshot(backend.url, None, tmp_path / "out2", client=backend.client)


@pytest.mark.parametrize("cut_at", ["stored", "manifest", "latest"])
def test_s3_outage_mid_snapshot_keeps_latest_and_a_retry_completes(
    tmp_path: Path, cut_at: str
) -> None:
    """The S3 endpoint goes away in the middle of a snapshot, then comes back.

    The outage is real: the progress callback stops the moto server, so the remaining requests
    hit a closed port (connection refused / reset) over HTTP, with uploads still in flight on
    transfer threads when cutting at "stored". Moto keeps its objects in process-wide state, so
    restarting the server on the same port brings back exactly what had been stored before the
    cut, which is what a retry would find after a real outage. (A botocore hook raising after N
    calls would never exercise the transport; a proxy would add code for the same effect.)
    """
    home = tmp_path / "home"
    sources = make_tree(home)
    with moto_s3() as s3:
        backend = Backend(url=s3.url("snap"), client=s3.client, s3=s3)
        first = snapshot(sources, backend)
        for i in range(6):  # new content for the second snapshot: 5 small files + 9 MiB
            (home / f"lake/new/part-{i}.parquet").parent.mkdir(parents=True, exist_ok=True)
            size = 9 * MiB if i == 0 else 30_000
            (home / f"lake/new/part-{i}.parquet").write_bytes(random.Random(i).randbytes(size))

        def cut(event: ProgressEvent) -> None:
            if event.stage == cut_at and (cut_at != "stored" or event.done_files >= 2):
                s3.stop()

        later = NOW + timedelta(minutes=5)
        with pytest.raises(SnapshotError, match=r"latest\.json is unchanged") as err:
            snapshot(sources, backend, now=later, progress=cut)
        assert f"snapshot {first.snapshot_id}" in str(err.value)

        s3.start()
        assert json.loads(backend.read("latest.json"))["version"] == first.snapshot_id
        assert [v["version"] for v in list_snapshots(backend.url, client=s3.client)] == [
            first.snapshot_id
        ]
        assert verify_snapshot(backend.url, client=s3.client).ok
        stored_new = len([k for k in backend.stored() if k.startswith("objects/")]) - 5

        retry = snapshot(sources, backend, now=later)
        assert retry.files_uploaded == 6 - stored_new
        if cut_at == "stored":
            assert stored_new >= 2 and retry.bytes_reused > first.bytes_total
        else:  # every object was stored before the cut
            assert retry.files_uploaded == 0 and retry.bytes_reused == retry.bytes_total
        # A manifest that made it (cut before latest.json) keeps its id; the retry takes the next.
        expected_id = "202503141514-2" if cut_at == "latest" else "202503141514"
        assert retry.snapshot_id == expected_id
        assert json.loads(backend.read("latest.json"))["version"] == expected_id
        assert verify_snapshot(backend.url, client=s3.client).ok


@pytest.mark.parametrize("fail_at", ["stored", "latest", "versions"])
def test_file_target_failure_keeps_latest_and_a_retry_completes(
    tmp_path: Path, fail_at: str
) -> None:
    """Same guarantee on file://, failing through the progress callback (disk full, ^C...)."""
    home = tmp_path / "home"
    sources = make_tree(home)
    backend = Backend(url=(tmp_path / "store").as_uri(), root=tmp_path / "store")
    first = snapshot(sources, backend)
    (home / PREDICTIONS).write_bytes(b"changed\n")
    (home / "lake/new.parquet").write_bytes(b"new\n")

    def fail(event: ProgressEvent) -> None:
        if event.stage == fail_at:
            raise OSError("No space left on device")

    with pytest.raises(SnapshotError, match="No space left on device") as err:
        snapshot(sources, backend, now=NOW + timedelta(minutes=1), progress=fail)
    latest = json.loads(backend.read("latest.json"))["version"]
    assert not [k for k in backend.stored() if "/." in k or k.startswith(".")]  # no temp files
    if fail_at == "versions":  # latest.json was already replaced; the log catches up next time
        assert "latest.json already names" in str(err.value)
        assert latest == "202503141510"
        listed = list_snapshots(backend.url)
        assert [(v["version"], v["latest"]) for v in listed][-1] == ("202503141510", True)
    else:
        assert latest == first.snapshot_id
    assert verify_snapshot(backend.url).ok

    retry = snapshot(sources, backend, now=NOW + timedelta(minutes=1))
    assert retry.files_uploaded == (1 if fail_at == "stored" else 0)
    logged = json.loads(backend.read("versions.json"))["versions"]
    assert logged[0]["version"] == first.snapshot_id
    assert logged[-1]["version"] == retry.snapshot_id
    assert json.loads(backend.read("latest.json"))["version"] == retry.snapshot_id
    assert len({v["version"] for v in logged}) == len(logged) == (3 if fail_at == "versions" else 2)


def test_no_credential_value_reaches_output_logs_results_or_metadata(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs with the credentials only in the environment (client=None → default boto3 client),
    at the log levels an operator would use: DEBUG for evalpipe, INFO for libraries.

    Not covered, on purpose: botocore's own DEBUG logging prints each signed request, whose
    Authorization header carries the access key id (never the secret). The CLI and Dagster
    wiring must not turn on DEBUG for botocore/boto3.
    """
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="evalpipe")
    sources = make_tree(tmp_path / "home")
    seen: list[str] = []
    with moto_s3() as s3:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the outage below should fail fast
        url = s3.url("creds")
        result = take_snapshot(sources, url, note="creds", stats=STATS, now=NOW, progress=print)
        seen += [repr(result), json.dumps(result.to_dict()), json.dumps(result.manifest)]
        seen += [repr(verify_snapshot(url)), json.dumps(list_snapshots(url))]
        seen.append(repr(restore_snapshot(url, BASE_ID, tmp_path / "out")))
        for key in s3.keys("creds/"):
            if not key.startswith("creds/objects/"):  # manifest, latest.json, versions.json
                seen.append(s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read().decode())
        s3.stop()
        with pytest.raises(SnapshotError) as err:
            take_snapshot(sources, url, now=NOW, progress=print)
        seen.append(str(err.value))
    out = capsys.readouterr()
    everything = "\n".join([*seen, out.out, out.err, caplog.text])
    assert "snapshot 202503141509" in everything  # the capture did capture something
    assert TEST_SECRET_ACCESS_KEY not in everything
    assert TEST_ACCESS_KEY_ID not in everything
