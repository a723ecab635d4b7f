"""Snapshot expiry and the object sweep: what the policy keeps, and that nothing kept is lost."""

import hashlib
import os
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evalpipe.core.config import load_settings
from evalpipe.core.retention_policy import RetentionPolicy, SnapshotPolicy
from evalpipe.retention import objects, snapshots
from evalpipe.retention.plan import Scope, apply_retention, plan_retention
from evalpipe.snapshots.leases import lease
from evalpipe.snapshots.manifests import (
    SnapshotError,
    list_snapshots,
    manifest_key,
    object_key,
    restore_snapshot,
    verify_snapshot,
)
from evalpipe.snapshots.store import Upload, open_store
from evalpipe_tests.snapshots.backends import NOW, Backend, digests, make_tree, snapshot

LATER = time.time() + 100 * 3600  # past the 72 h grace period of every object written now
KEEP_ONE = SnapshotPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)


def entry(version: str, when: datetime) -> dict:
    return {"version": version, "timestamp": when.isoformat().replace("+00:00", "Z"), "bytes": 1}


def test_a_snapshot_is_kept_if_any_rule_keeps_it() -> None:
    start = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
    # two a day for 90 days
    entries = [
        entry(f"s{day:03d}{half}", start + timedelta(days=day, hours=6 * half))
        for day in range(90)
        for half in (0, 1)
    ]
    policy = SnapshotPolicy(keep_last=3, keep_daily=5, keep_weekly=2, keep_monthly=3)
    decisions = {d.version: d for d in snapshots.decide(entries, policy, "s0891")}
    kept = sorted(v for v, d in decisions.items() if d.keep)
    # last 3 (s0891 s0890 s0881); newest of each of the last 5 days (days 85-89); of the last
    # 2 ISO weeks (day 89 is Monday 2025-03-31, alone in W14; W13 ends on day 88); of the last
    # 3 months (days 89, 58 and 30)
    assert kept == ["s0301", "s0581", "s0851", "s0861", "s0871", "s0881", "s0890", "s0891"]
    assert decisions["s0891"].reasons[0] == "latest"
    assert "monthly: newest of 2025-01" in decisions["s0301"].reasons
    assert not decisions["s0880"].keep


def test_latest_and_pinned_survive_a_policy_that_keeps_nothing() -> None:
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    entries = [entry(f"s{i}", start + timedelta(days=i)) for i in range(4)]
    nothing = SnapshotPolicy(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0)
    decisions = snapshots.decide(entries, replace(nothing, pinned=("s0",)), "s3", pins=["s1"])
    assert {d.version: d.reasons for d in decisions if d.keep} == {
        "s3": ("latest",),
        "s1": ("pinned",),
        "s0": ("pinned",),
    }


def three_snapshots(tmp_path: Path, backend: Backend) -> tuple[list[str], dict[str, str]]:
    """Three snapshots with changes between them; returns their ids and the last tree's digests."""
    home = tmp_path / "home"
    sources = make_tree(home)
    ids = []
    for n in range(3):
        (home / "dumps/changing.txt").write_bytes(f"version {n}\n".encode() * 100)
        (home / f"lake/only-in-{n}.bin").write_bytes(bytes([n]) * 5000)
        if n:
            (home / f"lake/only-in-{n - 1}.bin").unlink()
        ids.append(snapshot(sources, backend, now=NOW + timedelta(days=n)).snapshot_id)
    return ids, digests(home)


def scope_for(
    tmp_path: Path, backend: Backend, policy: SnapshotPolicy, now: float = LATER
) -> Scope:
    settings = load_settings(
        {"EVALPIPE_HOME": str(tmp_path / "home"), "EVALPIPE_SNAPSHOT_TARGET": backend.url}
    )
    retention = RetentionPolicy(snapshots=policy)
    retention = replace(retention, archive=replace(retention.archive, target=backend.url))
    return Scope(settings, retention, [], client_for=lambda target: backend.client, now=now)


def test_expiry_keeps_one_snapshot_restorable_and_sweeps_only_what_nothing_else_uses(
    tmp_path: Path, backend: Backend
) -> None:
    ids, last_tree = three_snapshots(tmp_path, backend)
    scope = scope_for(tmp_path, backend, KEEP_ONE)
    store = open_store(backend.url, backend.client)
    first_only = object_key(hashlib.sha256(bytes([0]) * 5000).hexdigest())
    assert first_only in backend.stored()

    actions, kept = plan_retention(scope)
    planned = {(a.action, a.target) for a in actions}
    assert {("expire_snapshot", ids[0]), ("expire_snapshot", ids[1])} <= planned
    assert ("delete_object", store.target.uri(first_only)) in planned
    assert kept[0].startswith(f"snapshot {ids[2]}: latest")
    assert backend.stored().keys() >= {manifest_key(ids[0]), first_only}  # the plan changed nothing

    outcome = apply_retention(scope, progress=lambda line: None)
    assert outcome.counts()["expire_snapshot"] == 2
    stored = backend.stored()
    assert manifest_key(ids[0]) not in stored and manifest_key(ids[1]) not in stored
    assert first_only not in stored
    assert outcome.bytes_freed() > 0
    listed = {e["version"]: e for e in list_snapshots(backend.url, client=backend.client)}
    assert listed[ids[0]]["expired"] and listed[ids[1]]["expired"]  # marked, never erased
    assert verify_snapshot(backend.url, ids[2], client=backend.client).ok
    restore_snapshot(backend.url, ids[2], tmp_path / "back", client=backend.client)
    assert digests(tmp_path / "back") == last_tree

    again = apply_retention(scope, progress=lambda line: None)
    assert again.done == []
    assert plan_retention(scope)[0] == []
    assert backend.stored() == stored


def test_objects_of_a_snapshot_being_written_are_kept_by_the_grace_period(
    tmp_path: Path, backend: Backend
) -> None:
    three_snapshots(tmp_path, backend)
    store = open_store(backend.url, backend.client)
    # A snapshot in progress: its objects are uploaded, its manifest not written yet.
    (tmp_path / "new.bin").write_bytes(b"fresh" * 1000)
    sha = hashlib.sha256(b"fresh" * 1000).hexdigest()
    store.put_files([Upload(object_key(sha), tmp_path / "new.bin", 5000, sha)])
    candidates = objects.unreferenced_objects(store, 72)
    assert [c.key for c in candidates] == [object_key(sha)]
    assert not candidates[0].deletable
    apply_retention(scope_for(tmp_path, backend, KEEP_ONE, now=time.time()), progress=print)
    assert object_key(sha) in backend.stored()


def test_a_snapshot_in_progress_postpones_the_sweep_and_expiry(
    tmp_path: Path, backend: Backend
) -> None:
    three_snapshots(tmp_path, backend)
    store = open_store(backend.url, backend.client)
    before = backend.stored()
    with lease(store, "snapshot", against=["sweep"]):
        outcome = apply_retention(
            scope_for(tmp_path, backend, KEEP_ONE, now=time.time()), progress=lambda line: None
        )
    assert outcome.done == []
    assert any(k.startswith("postponed: another writer is in progress") for k in outcome.kept)
    assert backend.stored() == before


def test_a_manifest_that_cannot_be_read_stops_the_sweep(tmp_path: Path, backend: Backend) -> None:
    three_snapshots(tmp_path, backend)
    open_store(backend.url, backend.client).put_bytes(
        "snapshots/209901010000/manifest.json", b"{not json"
    )
    before = backend.stored()
    with pytest.raises(Exception, match="not valid JSON"):
        apply_retention(scope_for(tmp_path, backend, KEEP_ONE), progress=lambda line: None)
    assert {k for k in backend.stored() if k.startswith("objects/")} == {
        k for k in before if k.startswith("objects/")
    }


def test_pin_protects_a_snapshot_until_unpinned(tmp_path: Path, backend: Backend) -> None:
    ids, _ = three_snapshots(tmp_path, backend)
    store = open_store(backend.url, backend.client)
    assert snapshots.set_pinned(store, ids[0], True) == {ids[0]}
    scope = scope_for(tmp_path, backend, KEEP_ONE)
    apply_retention(scope, progress=lambda line: None)
    assert verify_snapshot(backend.url, ids[0], client=backend.client).ok
    snapshots.set_pinned(store, ids[0], False)
    apply_retention(scope, progress=lambda line: None)
    assert manifest_key(ids[0]) not in backend.stored()
    with pytest.raises(Exception, match="or it expired"):
        snapshots.set_pinned(store, ids[0], True)


def test_a_sweep_in_progress_makes_a_snapshot_fail_cleanly(
    tmp_path: Path, backend: Backend
) -> None:
    ids, _ = three_snapshots(tmp_path, backend)
    store = open_store(backend.url, backend.client)
    conflict = pytest.raises(SnapshotError, match="another writer is in progress")
    with lease(store, "sweep", against=["snapshot"]), conflict as caught:
        snapshot(make_tree(tmp_path / "other"), backend)
    assert f"latest.json is unchanged (snapshot {ids[2]})" in str(caught.value)
    assert [e["version"] for e in list_snapshots(backend.url, client=backend.client)] == ids
    assert not any(k.startswith("leases/") for k in backend.stored())


def test_temporary_files_of_interrupted_writes_in_a_directory_target_are_swept_after_grace(
    tmp_path: Path,
) -> None:
    backend = Backend(url=(tmp_path / "store").as_uri(), root=tmp_path / "store")
    three_snapshots(tmp_path, backend)
    objects_dir = tmp_path / "store" / "objects" / "ab"
    objects_dir.mkdir(parents=True, exist_ok=True)
    stale = objects_dir / ".ab12.0123456789ab.partial"  # a write killed days ago
    fresh = objects_dir / ".ab34.0123456789ab.partial"  # a snapshot writing right now
    stale.write_bytes(b"half an object")
    fresh.write_bytes(b"half an object")
    days_ago = time.time() - 4 * 86400
    os.utime(stale, (days_ago, days_ago))
    scope = scope_for(tmp_path, backend, KEEP_ONE, now=time.time())
    actions, _ = plan_retention(scope)
    assert [a.target for a in actions if a.action == "sweep_partial"] == [str(stale)]
    apply_retention(scope, progress=lambda line: None)
    assert not stale.exists() and fresh.exists()
