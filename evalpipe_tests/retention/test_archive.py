"""Archiving run directories: verified before anything local goes, restored byte for byte."""

import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from evalpipe.core.config import load_settings
from evalpipe.core.retention_policy import ArchivePolicy, LakePolicy, RetentionPolicy
from evalpipe.retention import archives_table, lake_sweep
from evalpipe.retention.archive import ArchiveError
from evalpipe.retention.plan import Scope, apply_archive, plan_archive, restore_archive
from evalpipe.snapshots.store import Store
from evalpipe.sources.olmes.samples import generate_dumps
from evalpipe.sources.olmes.source import OLMES
from evalpipe.storage.lake import Lake
from evalpipe_tests.retention.test_interruptions import age
from evalpipe_tests.snapshots.backends import Backend, digests


def make_scope(tmp_path: Path, backend: Backend, *, delete_local: bool) -> Scope:
    dumps = tmp_path / "dumps"
    if not dumps.exists():
        generate_dumps(dumps, runs=2, tasks=2, instances=3, seed=11)
        age(dumps, 45)
    settings = load_settings(
        {"EVALPIPE_HOME": str(tmp_path / "home"), "EVALPIPE_DUMPS": str(dumps)}
    )
    policy = RetentionPolicy(archive=ArchivePolicy(target=backend.url, delete_local=delete_local))
    return Scope(settings, policy, [OLMES], client_for=lambda target: backend.client)


def run_dirs(scope: Scope) -> list[Path]:
    return [scan.inventory.run_dir for scan in OLMES.scan(scope.settings.dumps).runs]


def mtimes(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in root.iterdir()}


def test_archive_restores_byte_identical_with_mtimes_and_a_second_run_does_nothing(
    tmp_path: Path, backend: Backend
) -> None:
    scope = make_scope(tmp_path, backend, delete_local=False)
    originals = {d: (digests(d), mtimes(d)) for d in run_dirs(scope)}
    actions, kept = plan_archive(scope)
    assert [a.action for a in actions] == ["archive", "archive"]
    assert kept == ["local run directories: kept ([archive] delete_local = false)"]
    outcome = apply_archive(scope, progress=lambda line: None)
    assert outcome.counts()["archive"] == 2
    assert all(d.is_dir() for d in originals), "delete_local is false: local copies stay"
    rows = archives_table.read_archives(scope.lake)
    assert {r["local_path"] for r in rows} == {str(d) for d in originals}
    assert all(r["target"] == backend.url and r["local_deleted_at"] is None for r in rows)
    for row in rows:
        back = Path(
            restore_archive(scope, row["archive_id"], tmp_path / "back" / row["archive_id"])
        )
        local = Path(row["local_path"])
        assert (digests(back), mtimes(back)) == originals[local]
    assert plan_archive(scope)[0] == []
    assert apply_archive(scope, progress=lambda line: None).done == []
    with pytest.raises(ArchiveError, match="must be absent or an empty directory"):
        restore_archive(scope, rows[0]["archive_id"])  # where it was: still there


def test_a_file_changed_after_archiving_stops_the_deletion_and_is_reported(
    tmp_path: Path, backend: Backend
) -> None:
    apply_archive(make_scope(tmp_path, backend, delete_local=False), progress=lambda line: None)
    scope = make_scope(tmp_path, backend, delete_local=True)
    changed, other = run_dirs(scope)
    victim = changed / "metrics-all.jsonl"
    stat = victim.stat()
    data = bytearray(victim.read_bytes())
    data[0] ^= 1  # same size, same mtime: the fingerprint cannot tell
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    outcome = apply_archive(scope, progress=lambda line: None)
    assert changed.is_dir() and victim.read_bytes() == bytes(data)
    assert outcome.refused == [f"{changed} kept: {victim}: changed since it was archived"]
    assert not other.exists() and outcome.counts()["delete_local"] == 1

    (changed / "notes.txt").write_text("added after archiving")
    assert plan_archive(scope)[0] == [], "changed just now: not idle long enough to archive"
    age(changed, 45)  # a new state, idle again: archived anew, then deletable
    actions, _ = plan_archive(scope)
    assert [a.action for a in actions] == ["archive", "delete_local"]
    assert "changed since archive" in actions[0].reason


@dataclass
class ReadsBackWrong:
    """A store that stores faithfully but returns other bytes when read."""

    store: Store

    def read_chunks(self, key: str) -> Iterator[bytes]:
        for chunk in self.store.read_chunks(key):
            yield bytes([chunk[0] ^ 1]) + chunk[1:]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_an_archive_that_does_not_read_back_is_not_recorded_and_deletes_nothing(
    tmp_path: Path, backend: Backend
) -> None:
    @dataclass(frozen=True)
    class Broken(Scope):
        def archive_store(self) -> Store:
            return ReadsBackWrong(super().archive_store())  # type: ignore[return-value]

    base = make_scope(tmp_path, backend, delete_local=True)
    scope = Broken(base.settings, base.policy, base.sources, base.client_for)
    outcome = apply_archive(scope, progress=lambda line: None)
    assert outcome.done == [] and len(outcome.refused) == 2
    assert all("read back wrong" in line for line in outcome.refused)
    assert archives_table.read_archives(scope.lake) == []
    assert len(run_dirs(scope)) == 2


def test_stale_lake_partials_are_swept_unless_young_or_their_run_is_locked(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    run_dir = lake.run_dir("runs", "a/run")
    run_dir.mkdir(parents=True)
    committed = run_dir / "v1.parquet"
    committed.write_bytes(b"data")
    stale = run_dir / ".v2.parquet.0123456789ab.partial"
    young = run_dir / ".v3.parquet.0123456789ab.partial"
    staged_dir = lake.root / "artifacts" / "run_id=b" / ".v2.abcdefabcdef.partial"
    staged_dir.mkdir(parents=True)
    (staged_dir / "x-metrics.json").write_text("{}")
    for path in (stale, young):
        path.write_bytes(b"half")
    old = time.time() - 3 * 3600
    for path in (stale, staged_dir / "x-metrics.json", staged_dir, committed):
        os.utime(path, (old, old))
    key = run_dir.name.split("=", 1)[1]
    lake.lock_file(key).parent.mkdir(parents=True, exist_ok=True)
    with open(lake.lock_file(key), "a") as held:  # an ingest committing run a/run right now
        fcntl.flock(held, fcntl.LOCK_EX)
        swept, busy = lake_sweep.sweep_partials(lake, LakePolicy().partial_hours)
    assert [p.path for p in swept] == [staged_dir]
    assert [p.path for p in busy] == [stale]
    assert stale.exists() and young.exists()
    swept, busy = lake_sweep.sweep_partials(lake, LakePolicy().partial_hours)
    assert [p.path for p in swept] == [stale] and busy == []
    assert young.exists() and committed.read_bytes() == b"data"


def test_local_copies_of_runs_not_ingested_in_their_current_state_are_kept(
    tmp_path: Path, backend: Backend
) -> None:
    scope = make_scope(tmp_path, backend, delete_local=True)
    scope = replace(scope, is_ingested=lambda scan: False)
    actions, kept = plan_archive(scope)
    assert [a.action for a in actions] == ["archive", "archive"]
    assert all(
        line.endswith("local copy kept until its current state is ingested") for line in kept
    )
    outcome = apply_archive(scope, progress=lambda line: None)
    assert outcome.counts()["delete_local"] == 0 and len(run_dirs(scope)) == 2


def test_archive_sources_must_be_registered(tmp_path: Path, backend: Backend) -> None:
    scope = make_scope(tmp_path, backend, delete_local=False)
    policy = replace(scope.policy, archive=replace(scope.policy.archive, sources=("vmevalkit",)))
    with pytest.raises(ValueError, match="vmevalkit, which is not a registered source"):
        plan_archive(replace(scope, policy=policy))
