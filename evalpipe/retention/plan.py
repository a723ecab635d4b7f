"""Everything the policy would do now (`plan_*`), and doing it (`apply_*`), for the CLI and jobs.

A plan is a list of actions `{"action", "target", "reason", "bytes"}`; planning changes
nothing. Applying recomputes the same sets from the current state and acts on them, in the
order that keeps every step interruptible: archive and verify before deleting local copies;
mark snapshots expired, then delete their manifests, then sweep objects. Applying twice in a
row does nothing the second time, because everything done is visible in the state the second
run plans from. Dagster's own run history is pruned by the Dagster wiring
(`evalpipe.defs.retention.runs`), which adds its actions to the same list.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalpipe.core.config import Settings
from evalpipe.core.inventory import RunScan
from evalpipe.core.retention_policy import RetentionPolicy
from evalpipe.retention import archive as archiving
from evalpipe.retention import archives_table, lake_sweep, objects, snapshots
from evalpipe.snapshots.leases import LeaseConflict, lease
from evalpipe.snapshots.manifests import manifest_key
from evalpipe.snapshots.store import FileStore, Store, open_store
from evalpipe.sources.base import Source
from evalpipe.storage.lake import Lake

ACTIONS = (
    "archive",
    "delete_local",
    "expire_snapshot",
    "delete_object",
    "delete_dagster_run",
    "sweep_partial",
)
COLUMNS = ["action", "target", "reason", "bytes"]
WRITERS = ("snapshot", "archive")
"""Lease kinds that add references to a target; an object sweep waits for all of them."""
DAY = 86400.0


@dataclass(frozen=True)
class Action:
    action: str
    target: str
    reason: str
    bytes: int = 0

    def row(self) -> list[Any]:
        return [self.action, self.target, self.reason, self.bytes]


@dataclass
class Outcome:
    """What an apply did, for the job's metadata and the CLI: counts, bytes, kept and why."""

    done: list[Action] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {a: sum(1 for d in self.done if d.action == a) for a in ACTIONS}

    def bytes_freed(self) -> int:
        freeing = ("delete_local", "delete_object", "sweep_partial")
        return sum(d.bytes for d in self.done if d.action in freeing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "bytes_freed": self.bytes_freed(),
            "done": [asdict(d) for d in self.done],
            "kept": self.kept,
            "refused": self.refused,
        }


@dataclass(frozen=True)
class Scope:
    """What a plan looks at: settings, policy, the sources whose runs may be archived, the
    stores, and whether a run's current state has been ingested (local copies of runs the
    lake does not hold yet are never deleted)."""

    settings: Settings
    policy: RetentionPolicy
    sources: Sequence[Source]
    client_for: Callable[[str], Any] = lambda target: None
    is_ingested: Callable[[RunScan], bool] = lambda scan: True
    now: float = field(default_factory=time.time)

    @property
    def lake(self) -> Lake:
        return Lake(self.settings.lake)

    def snapshot_store(self) -> Store:
        target = self.settings.snapshot_target
        return open_store(target, self.client_for(target))

    def archive_store(self) -> Store:
        target = self.policy.archive.target
        return open_store(target, self.client_for(target))

    def stores(self) -> list[Store]:
        """Each distinct target once: snapshots and archives may share one."""
        found: dict[str, Store] = {}
        for store in (self.snapshot_store(), self.archive_store()):
            found.setdefault(store.target.url, store)
        return list(found.values())

    def archived_sources(self) -> list[Source]:
        names = {s.name: s for s in self.sources}
        unknown = [n for n in self.policy.archive.sources if n not in names]
        if unknown:
            raise ValueError(
                f"{self.policy.origin}: [archive] sources names {', '.join(unknown)}, which is "
                f"not a registered source; registered: {', '.join(names) or 'none'}"
            )
        return [names[n] for n in self.policy.archive.sources]


# --- archive ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ArchiveWork:
    scan: RunScan
    archived: dict | None  # the archive that holds this exact state, if any
    reason: str


def _archive_work(scope: Scope) -> list[_ArchiveWork]:
    """Runs old enough to archive, each with the archive already holding it (if any)."""
    after = scope.policy.archive.after_days
    latest: dict[tuple[str, str], dict] = {}
    for row in archives_table.read_archives(scope.lake):
        latest[(row["source"], row["run_id"])] = row
    work = []
    for source in scope.archived_sources():
        root = source.root(scope.settings)
        if not root.is_dir():
            continue
        for scan in source.scan(root).runs:
            inventory = scan.inventory
            if not inventory.complete or inventory.problems or not inventory.files:
                continue
            idle_days = (scope.now - inventory.newest_mtime) / DAY
            if idle_days < after:
                continue
            row = latest.get((source.name, scan.run_id))
            if row and row["fingerprint"] == inventory.fingerprint:
                work.append(_ArchiveWork(scan, row, f"archived as {row['archive_id']}"))
            else:
                why = f"unchanged for {idle_days:.0f} days (policy: {after})"
                if row:
                    why += f"; changed since archive {row['archive_id']}"
                work.append(_ArchiveWork(scan, None, why))
    return work


def _deletable(scope: Scope, item: _ArchiveWork) -> bool:
    return scope.policy.archive.delete_local and scope.is_ingested(item.scan)


def plan_archive(scope: Scope) -> tuple[list[Action], list[str]]:
    """Archive and local-deletion actions, and why local copies are kept."""
    actions, kept = [], []
    for item in _archive_work(scope):
        where = str(item.scan.inventory.run_dir)
        size = item.scan.inventory.total_bytes
        if item.archived is None:
            actions.append(Action("archive", where, item.reason, size))
        if _deletable(scope, item):
            actions.append(
                Action("delete_local", where, "every file is in a verified archive", size)
            )
        elif scope.policy.archive.delete_local:
            kept.append(f"{where}: local copy kept until its current state is ingested")
    if not scope.policy.archive.delete_local:
        kept.append("local run directories: kept ([archive] delete_local = false)")
    recorded = {r["archive_id"] for r in archives_table.read_archives(scope.lake)}
    for source in scope.archived_sources():
        for path, archive_id in archiving.leftover_deletions(source.root(scope.settings)):
            if archive_id in recorded:
                reason = f"finish an interrupted deletion (archive {archive_id})"
                actions.append(Action("delete_local", str(path), reason, 0))
    return actions, kept


def apply_archive(scope: Scope, progress: Callable[[str], None] = print) -> Outcome:
    """Archive, verify, record, then (with delete_local) delete local copies; see `archive`."""
    outcome = Outcome()
    store = scope.archive_store()
    now = datetime.fromtimestamp(scope.now, timezone.utc)
    for item in _archive_work(scope):
        where = str(item.scan.inventory.run_dir)
        row = item.archived
        if row is None:
            try:
                with lease(store, "archive", against=["sweep"], now=scope.now):
                    made = archiving.archive_run(store, item.scan, now)
            except (archiving.ArchiveError, LeaseConflict, OSError) as exc:
                outcome.refused.append(f"{where}: not archived: {exc}")
                continue
            archives_table.record_archives(scope.lake, [made])
            row = archives_table.find_archive(scope.lake, made.archive_id)
            outcome.done.append(Action("archive", where, made.manifest_uri, made.bytes))
            progress(f"archived {where} as {made.archive_id} ({made.files} files, verified)")
        else:
            outcome.kept.append(f"{where}: already in archive {row['archive_id']}")
        if not _deletable(scope, item):
            continue
        problems = archiving.delete_local(store, archives_table.as_archive(row))
        if problems:
            outcome.refused += [f"{where} kept: {p}" for p in problems]
            progress(f"kept {where}: {problems[0]}")
            continue
        archives_table.mark_deleted(scope.lake, [row["archive_id"]], now)
        outcome.done.append(
            Action("delete_local", where, f"in archive {row['archive_id']}", row["bytes"])
        )
        progress(f"deleted local copy {where} (archive {row['archive_id']})")
    _finish_deletions(scope, outcome, now)
    return outcome


def _finish_deletions(scope: Scope, outcome: Outcome, now: datetime) -> None:
    """Complete what a killed deletion left: a hidden `.deleting` directory of a recorded
    archive is removed, and an archive whose local copy is gone is marked so."""
    rows = archives_table.read_archives(scope.lake)
    recorded = {r["archive_id"] for r in rows}
    for source in scope.archived_sources():
        for path, archive_id in archiving.leftover_deletions(source.root(scope.settings)):
            if archive_id in recorded:
                shutil.rmtree(path)
                outcome.done.append(Action("delete_local", str(path), "interrupted deletion"))
    gone = [
        r["archive_id"]
        for r in rows
        if r["local_deleted_at"] is None and not Path(r["local_path"]).exists()
    ]
    if gone:
        archives_table.mark_deleted(scope.lake, gone, now)


def list_archives(scope: Scope) -> list[dict]:
    return archives_table.read_archives(scope.lake)


def restore_archive(scope: Scope, archive_id: str, dest: Any = None) -> str:
    row = archives_table.find_archive(scope.lake, archive_id)
    store = open_store(row["target"], scope.client_for(row["target"]))
    return str(archiving.restore(store, archives_table.as_archive(row), dest))


# --- retention -------------------------------------------------------------------------------


def plan_retention(scope: Scope) -> tuple[list[Action], list[str]]:
    """Snapshot expiry, object sweep and lake partial sweep actions, and what is kept and why."""
    actions: list[Action] = []
    kept: list[str] = []
    snapshot_store = scope.snapshot_store()
    decisions = snapshots.plan_expiry(snapshot_store, scope.policy.snapshots)
    expiring = []
    for d in decisions:
        if d.keep:
            kept.append(f"snapshot {d.version}: {'; '.join(d.reasons)}")
        else:
            expiring.append(manifest_key(d.version))
            reason = (
                f"taken {d.timestamp}, {d.bytes / 1e6:.1f} MB; no keep rule matches (objects "
                "only it uses are swept once past the grace period)"
            )
            actions.append(Action("expire_snapshot", d.version, reason, 0))
    for version in snapshots.pending_manifest_deletions(snapshot_store):
        actions.append(Action("expire_snapshot", version, "finish an interrupted expiry", 0))
    grace = scope.policy.objects.grace_hours
    for store in scope.stores():
        excluding = expiring if store.target.url == snapshot_store.target.url else ()
        young = 0
        for obj in objects.unreferenced_objects(store, grace, scope.now, excluding):
            if obj.deletable:
                reason = f"referenced by no kept snapshot or archive; {obj.age_hours:.0f}h old"
                actions.append(Action("delete_object", store.target.uri(obj.key), reason, obj.size))
            else:
                young += 1
        if young:
            kept.append(
                f"{young} unreferenced objects at {store.target.url}: within {grace}h grace"
            )
        if isinstance(store, FileStore):
            for partial in lake_sweep.find_partials(store.root, scope.now):
                if partial.age_hours >= grace:
                    reason = f"temporary file of an interrupted write, {partial.age_hours:.0f}h old"
                    actions.append(
                        Action("sweep_partial", str(partial.path), reason, partial.bytes)
                    )
    partial_hours = scope.policy.lake.partial_hours
    for partial in lake_sweep.find_partials(scope.lake.root, scope.now):
        if partial.age_hours < partial_hours:
            kept.append(f"{partial.path}: in progress ({partial.age_hours * 60:.0f} min old)")
        elif lake_sweep.is_busy(scope.lake, partial):
            kept.append(f"{partial.path}: an ingest is committing its run")
        else:
            reason = f"in-progress file {partial.age_hours:.1f}h old, no writer holds its run"
            actions.append(Action("sweep_partial", str(partial.path), reason, partial.bytes))
    return actions, kept


def apply_retention(scope: Scope, progress: Callable[[str], None] = print) -> Outcome:
    """Expire snapshots, then sweep unreferenced objects past the grace period (each target
    under a sweep lease: a snapshot in progress postpones it), then stale lake partials."""
    outcome = Outcome()
    snapshot_store = scope.snapshot_store()
    when = datetime.fromtimestamp(scope.now, timezone.utc)
    grace = scope.policy.objects.grace_hours
    for store in scope.stores():
        try:
            with lease(store, "sweep", against=WRITERS, now=scope.now):
                if store.target.url == snapshot_store.target.url:
                    _expire_snapshots(scope, store, when, outcome, progress)
                _sweep_objects(store, grace, scope.now, outcome, progress)
                if isinstance(store, FileStore):
                    for partial in lake_sweep.sweep_store_partials(store.root, grace, scope.now):
                        outcome.done.append(
                            Action("sweep_partial", str(partial.path), "", partial.bytes)
                        )
        except LeaseConflict as exc:
            outcome.kept.append(f"postponed: {exc}")
            progress(f"postponed: {exc}")
    swept, busy = lake_sweep.sweep_partials(scope.lake, scope.policy.lake.partial_hours, scope.now)
    outcome.kept += [f"{p.path}: an ingest is committing its run" for p in busy]
    for partial in swept:
        outcome.done.append(Action("sweep_partial", str(partial.path), "", partial.bytes))
        progress(f"swept {partial.path}")
    return outcome


def _expire_snapshots(
    scope: Scope, store: Store, when: datetime, outcome: Outcome, progress: Callable[[str], None]
) -> None:
    decisions = snapshots.plan_expiry(store, scope.policy.snapshots)
    outcome.kept += [f"snapshot {d.version}: {'; '.join(d.reasons)}" for d in decisions if d.keep]
    for version in snapshots.expire(store, [d.version for d in decisions if not d.keep], when):
        outcome.done.append(Action("expire_snapshot", version, "no keep rule matches"))
        progress(f"expired snapshot {version}")


def _sweep_objects(
    store: Store, grace: float, now: float, outcome: Outcome, progress: Callable[[str], None]
) -> None:
    candidates = objects.unreferenced_objects(store, grace, now)
    young = sum(1 for c in candidates if not c.deletable)
    if young:
        outcome.kept.append(f"{young} unreferenced objects at {store.target.url}: in grace")
    deleted = objects.sweep(store, candidates)
    for obj in deleted:
        outcome.done.append(Action("delete_object", store.target.uri(obj.key), "", obj.size))
    if deleted:
        progress(f"deleted {len(deleted)} unreferenced objects at {store.target.url}")
