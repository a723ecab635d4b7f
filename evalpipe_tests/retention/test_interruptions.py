"""A kill at any step of expiry, sweep or archive leaves only garbage, and a re-run completes.

Each test first counts the steps of an uninterrupted run, then for every step N starts from
the same state, kills the run just before step N, checks that every kept snapshot and every
recorded archive still restores byte for byte, re-runs without a kill, and checks that the
result is what the uninterrupted run produced.
"""

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from evalpipe.core.config import load_settings
from evalpipe.core.retention_policy import ArchivePolicy, RetentionPolicy
from evalpipe.retention import archive as archiving
from evalpipe.retention import archives_table
from evalpipe.retention.plan import Scope, apply_archive, apply_retention
from evalpipe.snapshots.manifests import list_snapshots, restore_snapshot, verify_snapshot
from evalpipe.snapshots.store import Store, open_store
from evalpipe.sources.olmes.samples import generate_dumps
from evalpipe.sources.olmes.source import OLMES
from evalpipe_tests.retention.crash import Crash, Crasher
from evalpipe_tests.retention.test_snapshots import KEEP_ONE, LATER, three_snapshots
from evalpipe_tests.snapshots.backends import Backend, digests


@dataclass(frozen=True)
class CrashingScope(Scope):
    """A Scope whose stores go through a Crasher."""

    crasher: Crasher = field(default_factory=lambda: Crasher(None))

    def snapshot_store(self) -> Store:
        return self.crasher.wrap(super().snapshot_store())

    def archive_store(self) -> Store:
        return self.crasher.wrap(super().archive_store())


def fresh_backend(backend: Backend, tmp_path: Path, name: str) -> Backend:
    """An empty target beside `backend`'s, on the same kind of storage."""
    if backend.s3:
        return Backend(url=backend.s3.url(name), client=backend.client, s3=backend.s3)
    return Backend(url=(tmp_path / name).as_uri(), root=tmp_path / name)


def state(target: Backend) -> tuple[set[str], list[tuple[str, bool]]]:
    """Stored keys (but leases: a kill can leave one, ignored once stale) and each snapshot's
    expired flag."""
    keys = {k for k in target.stored() if not k.startswith("leases/")}
    log = list_snapshots(target.url, client=target.client)
    return keys, [(e["version"], bool(e.get("expired"))) for e in log]


def test_a_kill_at_any_step_of_expiry_and_sweep_keeps_every_kept_snapshot(
    tmp_path: Path, backend: Backend
) -> None:
    def setup(name: str) -> tuple[Backend, CrashingScope, list[str], dict[str, str], Path]:
        target = fresh_backend(backend, tmp_path, f"{name}-store")
        home = tmp_path / name
        ids, tree = three_snapshots(home, target)
        settings = load_settings(
            {"EVALPIPE_HOME": str(home / "home"), "EVALPIPE_SNAPSHOT_TARGET": target.url}
        )
        policy = RetentionPolicy(snapshots=KEEP_ONE, archive=ArchivePolicy(target=target.url))
        scope = CrashingScope(settings, policy, [], lambda t: target.client, now=LATER)
        return target, scope, ids, tree, home

    reference, scope, _, _, _ = setup("reference")
    apply_retention(scope, progress=lambda line: None)
    expected = state(reference)
    total = len(scope.crasher.steps)
    assert total >= 6  # lease, versions.json, 2 manifests, objects..., lease release

    for at in range(1, total + 1):
        target, scope, ids, tree, home = setup(f"kill{at}")
        crashing = replace(scope, crasher=Crasher(at))
        with pytest.raises(Crash):
            apply_retention(crashing, progress=lambda line: None)
        for entry in list_snapshots(target.url, client=target.client):
            if not entry.get("expired"):  # never a dangling manifest or a missing object
                assert verify_snapshot(target.url, entry["version"], client=target.client).ok
        restore_snapshot(target.url, ids[2], home / "restored", client=target.client)
        assert digests(home / "restored") == tree, f"killed before step {at}"
        apply_retention(scope, progress=lambda line: None)
        assert state(target) == expected, f"killed before step {at}"


def local_files(scope: Scope) -> list[Path]:
    """Files left under the dumps root, hidden ones included."""
    return [p for p in scope.settings.dumps.rglob("*") if p.is_file()]


def age(root: Path, days: float) -> None:
    """Date every file under `root` back by `days`."""
    when = os.path.getmtime(root) - days * 86400
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (when, when))


def test_a_kill_at_any_step_of_archive_and_delete_loses_no_run(
    tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    originals: dict[str, dict[str, str]] = {}
    pristine_dumps = tmp_path / "pristine"
    generate_dumps(pristine_dumps, runs=2, tasks=1, instances=2, seed=5)

    def setup(name: str) -> tuple[Backend, CrashingScope]:
        target = fresh_backend(backend, tmp_path, f"{name}-archive")
        dumps = tmp_path / name / "dumps"
        shutil.copytree(pristine_dumps, dumps)
        age(dumps, 60)
        settings = load_settings(
            {"EVALPIPE_HOME": str(tmp_path / name / "home"), "EVALPIPE_DUMPS": str(dumps)}
        )
        policy = RetentionPolicy(archive=ArchivePolicy(target=target.url, delete_local=True))
        scope = CrashingScope(settings, policy, [OLMES], lambda t: target.client)
        if not originals:
            for scan in OLMES.scan(dumps).runs:
                originals[scan.run_id] = digests(scan.inventory.run_dir)
        return target, scope

    crasher = Crasher(None)

    def table_write(original):
        def write(*args, **kwargs):
            crasher.step("write the archives table")
            return original(*args, **kwargs)

        return write

    real_rmtree = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        crasher.step(f"remove {Path(path).name}")
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(archives_table, "_write", table_write(archives_table._write))
    monkeypatch.setattr(shutil, "rmtree", rmtree)

    scope = replace(setup("reference")[1], crasher=crasher)
    apply_archive(scope, progress=lambda line: None)
    total = len(crasher.steps)
    assert not local_files(scope), "every run archived and deleted locally"

    def check_nothing_lost(scope: Scope, target: Backend, where: str) -> None:
        recorded = {r["run_id"]: r for r in archives_table.read_archives(scope.lake)}
        store = open_store(target.url, target.client)
        for run_id, files in originals.items():
            local = scope.settings.dumps / run_id
            if local.is_dir() and digests(local) == files:
                continue
            assert run_id in recorded, f"{run_id} neither local nor archived ({where})"
            back = archiving.restore(
                store, archives_table.as_archive(recorded[run_id]), where / run_id
            )
            assert digests(back) == files

    for at in range(1, total + 1):
        target, scope = setup(f"kill{at}")
        crasher.at, crasher.steps = at, []
        with pytest.raises(Crash):
            apply_archive(replace(scope, crasher=crasher), progress=lambda line: None)
        crasher.at = None
        check_nothing_lost(scope, target, tmp_path / f"kill{at}" / "restored-after-kill")
        apply_archive(scope, progress=lambda line: None)
        assert not local_files(scope), f"killed before step {at}"
        rows = archives_table.read_archives(scope.lake)
        assert sorted(r["run_id"] for r in rows) == sorted(originals)
        assert all(r["local_deleted_at"] is not None for r in rows)
        check_nothing_lost(scope, target, tmp_path / f"kill{at}" / "restored")
