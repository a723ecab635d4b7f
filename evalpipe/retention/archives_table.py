"""The `archives` table: one row per verified archive, kept in the lake beside the run tables.

It is a derived table of the lake (`derived/archives.parquet`, replaced atomically), so the
warehouse has an `archives` view: `SELECT r.run_id, a.target, a.local_deleted_at FROM runs r
JOIN archives a USING (run_id)` says where each archived run lives. The lake (and so this
table) is in every snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa

from evalpipe.retention.archive import Archive
from evalpipe.storage.lake import Lake

TABLE = "archives"
TIMESTAMP = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("archive_id", pa.string()),
        ("source", pa.string()),
        ("run_id", pa.string()),
        ("local_path", pa.string()),
        ("fingerprint", pa.string()),
        ("target", pa.string()),
        ("manifest_uri", pa.string()),
        ("manifest_sha256", pa.string()),
        ("files", pa.int64()),
        ("bytes", pa.int64()),
        ("archived_at", TIMESTAMP),
        ("local_deleted_at", TIMESTAMP),
    ]
)


def read_archives(lake: Lake) -> list[dict]:
    """Every recorded archive, oldest first (an empty list before the first one)."""
    if TABLE not in lake.derived_tables():
        return []
    rows = lake.read_derived(TABLE).to_pylist()
    return sorted(rows, key=lambda r: (r["archived_at"], r["archive_id"]))


def as_archive(row: dict) -> Archive:
    return Archive(**{k: v for k, v in row.items() if k != "local_deleted_at"})


def find_archive(lake: Lake, archive_id: str) -> dict:
    for row in read_archives(lake):
        if row["archive_id"] == archive_id:
            return row
    raise ValueError(f"no archive {archive_id!r}; `evalpipe archive list` shows their ids")


def record_archives(lake: Lake, archives: Sequence[Archive]) -> None:
    """Add archives not recorded yet (a re-run of an interrupted archive adds nothing twice)."""
    rows = read_archives(lake)
    known = {r["archive_id"] for r in rows}
    rows += [
        {**a.__dict__, "local_deleted_at": None} for a in archives if a.archive_id not in known
    ]
    _write(lake, rows)


def mark_deleted(lake: Lake, archive_ids: Sequence[str], when: datetime) -> None:
    wanted = set(archive_ids)
    rows = [
        {**r, "local_deleted_at": when} if r["archive_id"] in wanted else r
        for r in read_archives(lake)
    ]
    _write(lake, rows)


def _write(lake: Lake, rows: list[dict]) -> None:
    lake.write_derived(TABLE, pa.Table.from_pylist(rows, SCHEMA))
