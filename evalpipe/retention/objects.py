"""Mark and sweep of a target's content-addressed objects, after a grace period.

Mark: every object named by a manifest that is still wanted, i.e. every snapshot manifest not
marked expired (logged, or not yet logged: a snapshot in progress, or one interrupted before
latest.json) and every archive manifest (archives are never expired). Sweep: an object no such
manifest names AND last written more than `grace_hours` ago. The grace period is what protects
a snapshot being written right now: its new objects are younger than the grace period, and the
objects it reuses are checked by the snapshot itself (`_check_stored`) before its manifest is
written. References are computed again right before deleting, so a manifest committed between
the plan and the sweep keeps its objects. A manifest that cannot be read stops the sweep: its
references are unknown, and guessing could delete a kept snapshot's data.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from evalpipe.retention.snapshots import loads
from evalpipe.snapshots.manifests import (
    _SHA256_RE,
    OBJECTS_PREFIX,
    SnapshotError,
    _read_versions,
    object_key,
)
from evalpipe.snapshots.store import Store

SNAPSHOTS_PREFIX = "snapshots/"
ARCHIVES_PREFIX = "archives/"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Unreferenced:
    """A stored object no wanted manifest names; `deletable` once older than the grace period."""

    key: str
    size: int
    age_hours: float
    deletable: bool


def wanted_manifests(store: Store) -> list[str]:
    """Keys of every manifest whose objects must be kept."""
    expired = {e["version"] for e in _read_versions(store) if e.get("expired")}
    keys = []
    for prefix in (SNAPSHOTS_PREFIX, ARCHIVES_PREFIX):
        for key in store.list_sizes(prefix):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == MANIFEST_NAME:
                if prefix == SNAPSHOTS_PREFIX and parts[1] in expired:
                    continue
                keys.append(key)
    return sorted(keys)


def referenced_objects(store: Store, excluding: Collection[str] = ()) -> set[str]:
    """Object keys named by any wanted manifest (but those in `excluding`: manifests about to
    be expired, when planning)."""
    referenced: set[str] = set()
    for key in wanted_manifests(store):
        if key in excluding:
            continue
        try:
            manifest = loads(store.get_bytes(key), store.target.uri(key))
        except FileNotFoundError:
            continue  # expired (or removed) between the listing and now: it names nothing
        entries = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(entries, list):
            raise SnapshotError(
                f"{store.target.uri(key)} has no list of files; not sweeping anything until it "
                "is repaired or removed (its references are unknown)"
            )
        for entry in entries:
            sha = entry.get("sha256") if isinstance(entry, dict) else None
            if isinstance(sha, str) and _SHA256_RE.fullmatch(sha):
                referenced.add(object_key(sha))
    return referenced


def unreferenced_objects(
    store: Store, grace_hours: float, now: float | None = None, excluding: Collection[str] = ()
) -> list[Unreferenced]:
    """Every stored object no wanted manifest (outside `excluding`) names, oldest first."""
    now = time.time() if now is None else now
    referenced = referenced_objects(store, excluding)
    found = [
        Unreferenced(key, obj.size, age, age >= grace_hours)
        for key, obj in store.list_objects(OBJECTS_PREFIX).items()
        if key not in referenced
        for age in [(now - obj.modified) / 3600]
    ]
    return sorted(found, key=lambda u: -u.age_hours)


def sweep(store: Store, candidates: Sequence[Unreferenced]) -> list[Unreferenced]:
    """Delete the deletable `candidates` that are still unreferenced now; returns those deleted."""
    referenced = referenced_objects(store)
    deleted = []
    for candidate in candidates:
        if candidate.deletable and candidate.key not in referenced:
            store.delete(candidate.key)
            deleted.append(candidate)
    return deleted
