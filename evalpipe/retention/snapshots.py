"""Which snapshots a policy keeps, and expiring the rest without ever leaving a dangling manifest.

A snapshot is kept if ANY rule keeps it (Iceberg's `expire_snapshots` and restic's `forget`
semantics): the `keep_last` newest, the newest of each of the `keep_daily` most recent days that
have snapshots (likewise ISO weeks and months), every pinned one, and `latest` always. Expiry
first marks entries `expired` in `versions.json` (they are never erased from the log), then
deletes their manifests; the objects they alone referenced are swept later, after the grace
period (`evalpipe.retention.objects`). An interruption between steps leaves a marked entry whose
manifest still exists, or objects nobody references: garbage, never a kept snapshot missing
anything. Pins live at the target in `pins.json`, next to the snapshots they protect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from evalpipe.core.retention_policy import SnapshotPolicy
from evalpipe.snapshots.manifests import (
    _ID_RE,
    FORMAT,
    LATEST_KEY,
    VERSIONS_KEY,
    SnapshotError,
    _dumps,
    _read_json,
    _read_versions,
    manifest_key,
)
from evalpipe.snapshots.store import Store

PINS_KEY = "pins.json"


@dataclass(frozen=True)
class SnapshotDecision:
    """One snapshot's fate under the policy, with every reason it is kept (none: expired)."""

    version: str
    timestamp: str
    bytes: int
    reasons: tuple[str, ...]

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


def read_pins(store: Store) -> set[str]:
    data = _read_json(store, PINS_KEY)
    return set(data.get("pinned", [])) if isinstance(data, dict) else set()


def set_pinned(store: Store, snapshot_id: str, pinned: bool) -> set[str]:
    """Pin (keep forever) or unpin a snapshot that exists; returns the pins now in force."""
    if not _ID_RE.match(snapshot_id):
        raise SnapshotError(f"{snapshot_id!r} is not a snapshot id (YYYYMMDDHHMM[-N])")
    live = {e["version"] for e in live_entries(store)}
    if pinned and snapshot_id not in live:
        raise SnapshotError(f"no snapshot {snapshot_id} at {store.target.url} (or it expired)")
    pins = read_pins(store)
    pins = pins | {snapshot_id} if pinned else pins - {snapshot_id}
    store.put_bytes(PINS_KEY, _dumps({"format": FORMAT, "pinned": sorted(pins)}))
    return pins


def live_entries(store: Store) -> list[dict[str, Any]]:
    """Logged snapshots not marked expired (plus latest.json's, if an interrupted snapshot
    never logged it), oldest first."""
    log = _read_versions(store)
    latest = _read_json(store, LATEST_KEY)
    if latest and latest["version"] not in {e["version"] for e in log}:
        log.append(latest)
    return [e for e in log if not e.get("expired")]


def decide(
    entries: Sequence[dict[str, Any]],
    policy: SnapshotPolicy,
    latest: str | None,
    pins: Iterable[str] = (),
) -> list[SnapshotDecision]:
    """Every live snapshot with the reasons it is kept, newest first."""
    pinned = set(pins) | set(policy.pinned)
    ordered = sorted(entries, key=lambda e: (e["timestamp"], e["version"]), reverse=True)
    reasons: dict[str, list[str]] = {e["version"]: [] for e in ordered}
    for entry in ordered[: policy.keep_last]:
        reasons[entry["version"]].append(f"one of the last {policy.keep_last}")
    rules: list[tuple[int, str, Callable[[datetime], str]]] = [
        (policy.keep_daily, "daily", lambda t: t.strftime("%Y-%m-%d")),
        (policy.keep_weekly, "weekly", lambda t: t.strftime("%G-W%V")),
        (policy.keep_monthly, "monthly", lambda t: t.strftime("%Y-%m")),
    ]
    for count, name, bucket_of in rules:
        seen: list[str] = []
        for entry in ordered:
            bucket = bucket_of(_when(entry))
            if bucket not in seen:
                seen.append(bucket)
                if len(seen) > count:
                    break
                reasons[entry["version"]].append(f"{name}: newest of {bucket}")
    for entry in ordered:
        if entry["version"] == latest:
            reasons[entry["version"]].insert(0, "latest")
        if entry["version"] in pinned:
            reasons[entry["version"]].insert(0, "pinned")
    return [
        SnapshotDecision(
            e["version"], e["timestamp"], int(e.get("bytes", 0)), tuple(reasons[e["version"]])
        )
        for e in ordered
    ]


def plan_expiry(store: Store, policy: SnapshotPolicy) -> list[SnapshotDecision]:
    latest = _read_json(store, LATEST_KEY)
    return decide(
        live_entries(store), policy, latest["version"] if latest else None, read_pins(store)
    )


def pending_manifest_deletions(store: Store) -> list[str]:
    """Manifests of snapshots already marked expired that still exist (an interrupted expiry)."""
    return [
        e["version"]
        for e in _read_versions(store)
        if e.get("expired") and store.exists(manifest_key(e["version"]))
    ]


def expire(store: Store, versions: Sequence[str], now: datetime | None = None) -> list[str]:
    """Mark `versions` expired in versions.json, then delete their manifests (and those of
    entries an interrupted run marked before). Refuses latest and pinned snapshots, whatever
    the caller asks. Returns the manifests deleted."""
    latest = _read_json(store, LATEST_KEY)
    protected = read_pins(store) | ({latest["version"]} if latest else set())
    refused = sorted(set(versions) & protected)
    if refused:
        raise SnapshotError(f"refusing to expire latest or pinned snapshots: {', '.join(refused)}")
    log = _read_versions(store)
    if latest and latest["version"] not in {e["version"] for e in log}:
        log.append(latest)
    wanted = set(versions)
    stamp = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    changed = False
    for entry in log:
        if entry["version"] in wanted and not entry.get("expired"):
            entry["expired"] = True
            entry["expired_at"] = stamp.replace("+00:00", "Z")
            changed = True
    if changed:
        store.put_bytes(VERSIONS_KEY, _dumps({"format": FORMAT, "versions": log}))
    deleted = []
    for version in pending_manifest_deletions(store):
        store.delete(manifest_key(version))
        deleted.append(version)
    return deleted


def _when(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))


def loads(raw: bytes, what: str) -> Any:
    """JSON from storage, failing with a message naming what it is."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise SnapshotError(f"{what} is not valid JSON: {exc}") from exc
