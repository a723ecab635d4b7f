"""Leases that keep a snapshot and an object sweep off the same target at the same time.

A snapshot may reuse a stored object that no kept manifest names yet (an expired snapshot's);
a sweep running meanwhile could delete it just before the snapshot's manifest names it. So each
side writes its lease (`leases/<kind>-<token>.json`) and only then looks for the other's: with
read-after-write consistency (local directories, S3) at least one of two overlapping parties
sees the other and backs off, removing its own lease. Writers that add references (snapshots, archives) take
`snapshot` or `archive` leases and back off from a `sweep` lease; a sweep backs off from both.
A lease left by a crash stops mattering
once it is older than `STALE_HOURS`: a snapshot or sweep never takes that long.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from evalpipe.snapshots.store import Store, redact_credentials

logger = logging.getLogger(__name__)

LEASES_PREFIX = "leases/"
STALE_HOURS = 24.0


class LeaseConflict(RuntimeError):
    """The other kind of writer holds a fresh lease on the target."""


def fresh_leases(store: Store, kind: str, now: float | None = None) -> list[str]:
    """Keys of leases of `kind` younger than `STALE_HOURS`."""
    now = time.time() if now is None else now
    return sorted(
        key
        for key, obj in store.list_objects(LEASES_PREFIX).items()  # a directory, on file://
        if key.startswith(f"{LEASES_PREFIX}{kind}-") and now - obj.modified < STALE_HOURS * 3600
    )


@contextmanager
def lease(
    store: Store, kind: str, against: Sequence[str], now: float | None = None
) -> Iterator[str]:
    """Hold a `kind` lease for the block; LeaseConflict (lease removed) if a fresh lease of a
    kind in `against` exists once ours is written."""
    key = f"{LEASES_PREFIX}{kind}-{uuid.uuid4().hex[:12]}.json"
    store.put_bytes(key, json.dumps({"kind": kind, "started_at": time.time()}).encode())
    try:
        others = [key for other in against for key in fresh_leases(store, other, now)]
        if others:
            raise LeaseConflict(
                f"another writer is in progress at {store.target.url} ({others[0]}); "
                f"the {kind} did not start. Retry when it has finished."
            )
        yield key
    finally:
        try:
            store.delete(key)
        except Exception as exc:  # an outage must not hide the block's own error
            logger.warning(
                "could not remove lease %s (%s); it stops mattering after %sh",
                store.target.uri(key),
                redact_credentials(str(exc)),
                STALE_HOURS,
            )
