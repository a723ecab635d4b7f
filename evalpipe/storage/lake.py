"""The lake: immutable Parquet files per (table, run), published by one commit record per run.

Layout under the lake root:

    <table>/run_id=<key>/<version>.parquet   one file per table and version of a run, never
                                             overwritten
    artifacts/run_id=<key>/<version>/        files a source rebuilds for a run (OLMES: per-task
                                             -metrics.json / -config.json), versioned alike
    _runs/<key>.json                         the run's commit record: for each table, the file
                                             that holds the run's rows now
    derived/<table>.parquet                  tables computed across runs (leaderboards)

A run's new version is written as new files beside the old ones; replacing the commit record
(one atomic rename) is the commit point, so every reader that goes through the records (the
warehouse views list exactly the committed files) sees the run's previous complete version or
its new complete version, never a mix, whatever moment a crash or `kill -9` strikes. Files no
record points at are garbage from an interrupted write; each commit removes those of its run,
keeping the previous version's files for readers still using an older warehouse.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from evalpipe.core.atomic import atomic_path, fsync_path, partial_path, replace_durably
from evalpipe.storage.schemas import SCHEMAS, is_json_column

RECORDS_DIR = "_runs"
MAX_KEY_CHARS = 120
"""Longer run ids get a hashed directory name: a path component must stay under 255 bytes."""


def partition_key(run_id: str) -> str:
    """Directory-safe form of a run id (which contains `/`): percent-encoded, or for a long id
    a readable prefix plus a hash of the whole (the full id is in every row and record)."""
    key = quote(run_id, safe="")
    if len(key) <= MAX_KEY_CHARS:
        return key
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:20]
    return f"{key[: MAX_KEY_CHARS - 22].rstrip('%')}~{digest}"


@dataclass(frozen=True)
class Lake:
    """A lake rooted at a directory; every method names the table it touches."""

    root: Path

    def table_dir(self, table: str) -> Path:
        if table not in SCHEMAS:
            raise KeyError(f"unknown lake table {table!r}; known: {', '.join(sorted(SCHEMAS))}")
        return self.root / table

    def run_dir(self, table: str, run_id: str) -> Path:
        return self.table_dir(table) / f"run_id={partition_key(run_id)}"

    def record_path(self, run_id: str) -> Path:
        return self.root / RECORDS_DIR / f"{partition_key(run_id)}.json"

    def artifacts_dir(self, run_id: str) -> Path | None:
        """The run's committed artifact files, if its current version has any."""
        record = self.record(run_id)
        artifacts = record and record.get("artifacts")
        return self.root / artifacts if artifacts else None

    def record(self, run_id: str) -> dict | None:
        """The run's commit record, or None when nothing of it was ever committed."""
        path = self.record_path(run_id)
        return json.loads(path.read_text()) if path.exists() else None

    def records(self) -> list[dict]:
        """Every run's commit record, in run id order."""
        directory = self.root / RECORDS_DIR
        found = [json.loads(p.read_text()) for p in directory.glob("*.json")]
        return sorted(found, key=lambda r: r["run_id"])

    def partition_file(self, table: str, run_id: str) -> Path:
        """The file that holds the run's rows of `table` now (FileNotFoundError if none)."""
        record = self.record(run_id)
        if record is None or table not in record["tables"]:
            raise FileNotFoundError(f"run {run_id!r} has no committed {table} partition")
        return self.root / record["tables"][table]

    def files(self, table: str) -> list[Path]:
        """The committed file of every run that has `table`, in run id order."""
        self.table_dir(table)
        return self.committed_files().get(table, [])

    def committed_files(self) -> dict[str, list[Path]]:
        """Table → the committed file of every run that has it, from one read of the records
        (what the warehouse lists in its views)."""
        files: dict[str, list[Path]] = {}
        for record in self.records():
            for table, path in record["tables"].items():
                files.setdefault(table, []).append(self.root / path)
        return files

    def has_data(self, table: str) -> bool:
        return bool(self.files(table))

    def run_ids(self, table: str) -> list[str]:
        return [r["run_id"] for r in self.records() if table in r["tables"]]

    def read(self, table: str, run_id: str) -> pa.Table:
        return pq.read_table(self.partition_file(table, run_id))

    def stage(
        self, run_id: str, tables: Iterable[str], row_group_size: int = 64_000
    ) -> StagedPartitions:
        """Writers for a new version of one run's partitions of `tables`, published together
        by `commit()` (the run's other tables keep their committed files)."""
        version = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        return StagedPartitions(
            self,
            run_id,
            self.root / "artifacts" / f"run_id={partition_key(run_id)}" / version,
            {
                table: PartitionWriter(
                    self.run_dir(table, run_id) / f"{version}.parquet",
                    SCHEMAS[table],
                    row_group_size,
                )
                for table in tables
            },
        )

    def write(self, table: str, run_id: str, rows: pa.Table | Iterable[dict]) -> int:
        """Replace one run's partition of `table` with `rows`; returns the row count."""
        data = (
            rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), SCHEMAS[table])
        )
        with self.stage(run_id, [table]) as staged:
            staged.write(table, data)
            staged.commit()
        return data.num_rows

    def read_all(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """Every run's partition of `table` (an empty table with the schema when there is none)."""
        files = self.files(table)
        schema = SCHEMAS[table]
        if not files:
            empty = pa.Table.from_pylist([], schema)
            return empty.select(columns) if columns else empty
        return ds.dataset([str(f) for f in files], schema=schema, format="parquet").to_table(
            columns=columns
        )

    def count_rows(self, table: str) -> int:
        """Rows of a run-partitioned or derived table, from Parquet metadata alone."""
        files = self.files(table) if table in SCHEMAS else [self.derived_file(table)]
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    @contextmanager
    def _run_lock(self, run_id: str) -> Iterator[None]:
        """One committer per run at a time (a sensor run and the CLI may overlap)."""
        lock = self.lock_file(partition_key(run_id))
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def lock_file(self, key: str) -> Path:
        """The file whose flock serializes commits of the run whose partition key is `key`
        (retention's partial-file sweep takes it too, so it never races a commit)."""
        return self.root / RECORDS_DIR / f".{key}.lock"

    def _commit(
        self, run_id: str, writers: dict[str, PartitionWriter], artifacts: Path | bool | None
    ) -> None:
        """Publish the finished `writers` as version files and point the run's record at them
        (and at `artifacts`, a finished directory, or at none when it is None; False keeps the
        current ones), keeping its other tables; then delete the run's files that neither the
        new record nor the previous one names (all under the run's lock, so no committer
        deletes another's files before they are recorded)."""
        with self._run_lock(run_id):
            for writer in writers.values():
                writer.publish()
            files = {table: writer.target for table, writer in writers.items()}
            previous = self.record(run_id) or {"tables": {}}
            tables = {**previous["tables"]}
            tables.update({t: str(f.relative_to(self.root)) for t, f in files.items()})
            record = {
                "run_id": run_id,
                "tables": dict(sorted(tables.items())),
                "committed_at": datetime.now(timezone.utc).isoformat(),
            }
            if artifacts is False:
                artifacts = self.artifacts_dir(run_id)
            if artifacts:
                record["artifacts"] = str(artifacts.relative_to(self.root))
            with atomic_path(self.record_path(run_id)) as tmp:
                tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False))
            named = [*tables.values(), *previous["tables"].values()]
            named += [r["artifacts"] for r in (record, previous) if r.get("artifacts")]
            keep = {self.root / f for f in named}
            for old in [
                *(p for t in files for p in self.run_dir(t, run_id).glob("*.parquet")),
                *(self.root / "artifacts" / f"run_id={partition_key(run_id)}").glob("[!.]*"),
            ]:
                if old not in keep:
                    shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)

    def derived_file(self, table: str) -> Path:
        """Unpartitioned tables computed across runs (leaderboards) live beside the run tables."""
        return self.root / "derived" / f"{table}.parquet"

    def write_derived(self, table: str, data: pa.Table) -> int:
        with PartitionWriter(self.derived_file(table), data.schema) as writer:
            writer.write_table(data)
        return data.num_rows

    def read_derived(self, table: str) -> pa.Table:
        return pq.read_table(self.derived_file(table))

    def derived_tables(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "derived").glob("*.parquet"))

    def size_bytes(self) -> int:
        return (
            sum(p.stat().st_size for p in self.root.rglob("*.parquet")) if self.root.exists() else 0
        )


class PartitionWriter:
    """Streams record batches into a hidden temporary file that `publish` renames to its target.

    Used as a context manager (derived tables), a clean exit publishes; on an exception the
    temporary file is removed and the target is untouched.
    """

    def __init__(self, target: Path, schema: pa.Schema, row_group_size: int = 64_000) -> None:
        self.target = target
        self.schema = schema
        self.row_group_size = row_group_size
        self.rows = 0
        self.staged = partial_path(target)
        self._writer: pq.ParquetWriter | None = None
        self._finished = False

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def __enter__(self) -> PartitionWriter:
        return self.open()

    def open(self) -> PartitionWriter:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        plain = [field.name for field in self.schema if not is_json_column(field)]
        self._writer = pq.ParquetWriter(
            self.staged,
            self.schema,
            compression="zstd",
            use_dictionary=plain,
            write_statistics=plain,
        )
        return self

    def write_batch(self, batch: pa.RecordBatch) -> None:
        assert self._writer is not None, "use PartitionWriter as a context manager"
        self._writer.write_batch(batch, row_group_size=self.row_group_size)
        self.rows += batch.num_rows

    def write_table(self, table: pa.Table) -> None:
        assert self._writer is not None, "use PartitionWriter as a context manager"
        self._writer.write_table(table.cast(self.schema), row_group_size=self.row_group_size)
        self.rows += table.num_rows

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.finish()
                self.publish()
        finally:
            self.discard()

    def finish(self) -> None:
        """Close and fsync the temporary file: complete on disk, not yet in place (idempotent)."""
        assert self._writer is not None, "use PartitionWriter as a context manager"
        if not self._finished:
            self._writer.close()
            fsync_path(self.staged)
            self._finished = True

    def publish(self) -> None:
        """Rename the finished temporary file over the partition (the one atomic step)."""
        replace_durably(self.staged, self.target)

    def discard(self) -> None:
        """Drop whatever was not published; safe to call after `publish`."""
        if self._writer is not None:
            self._writer.close()
        self.staged.unlink(missing_ok=True)


class StagedPartitions:
    """A new version of one run's partitions of several tables, published together.

    Each table's file is written under a hidden temporary name, finished and renamed to its
    version file (invisible: no record names it yet); `commit()` then replaces the run's commit
    record, the one atomic step. A failure or crash before that publishes nothing. Leaving the
    `with` block without `commit()` discards every file of the version.
    """

    def __init__(
        self,
        lake: Lake,
        run_id: str,
        artifacts_dir: Path,
        writers: dict[str, PartitionWriter],
    ) -> None:
        self.lake = lake
        self.run_id = run_id
        self.artifacts_dir = artifacts_dir
        self.writers = writers
        self._artifacts: Path | bool | None = False
        self._committed = False

    def __enter__(self) -> StagedPartitions:
        return self

    def writer(self, table: str) -> PartitionWriter:
        """The table's staged writer, opened on first use (so a run whose tables are finished
        while it waits for its checks holds no open file)."""
        writer = self.writers[table]
        if not writer.is_open:
            writer.open()
        return writer

    def write(self, table: str, data: pa.Table) -> int:
        """Write a whole table into its staged partition and finish it."""
        writer = self.writer(table)
        writer.write_table(data)
        writer.finish()
        return data.num_rows

    def schema(self, table: str) -> pa.Schema:
        """The schema of a finished staged partition, from its footer (no data read)."""
        writer = self.writer(table)
        writer.finish()
        return pq.read_schema(writer.staged)

    def read(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """A finished staged partition as it will be published (only `columns`, if given), so
        checks can judge a run's new version before anyone sees it."""
        writer = self.writer(table)
        writer.finish()
        return pq.read_table(writer.staged, columns=columns)

    def write_artifacts(self, files: dict[str, bytes]) -> None:
        """Stage the run's artifact files (none: the version has no artifacts), written and
        synced now, published with the tables by `commit()`."""
        if not files:
            self._artifacts = None
            return
        staging = partial_path(self.artifacts_dir)
        staging.mkdir(parents=True)
        for name, data in files.items():
            path = staging / name
            if path.parent != staging:
                raise ValueError(f"artifact name {name!r} would leave its directory")
            path.write_bytes(data)
            fsync_path(path)
        fsync_path(staging)
        staging.rename(self.artifacts_dir)
        self._artifacts = self.artifacts_dir

    def commit(self, tables: Iterable[str] | None = None) -> None:
        """Publish the staged version of `tables` (default: all) and of the artifacts, in one
        record swap; the other staged tables are discarded."""
        chosen = sorted(set(self.writers if tables is None else tables))
        for table in chosen:
            self.writer(table).finish()
        self.lake._commit(self.run_id, {t: self.writers[t] for t in chosen}, self._artifacts)
        self._committed = True
        for table, writer in self.writers.items():
            if table not in chosen:
                writer.discard()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()

    def discard(self) -> None:
        """Drop every file of this version unless it was committed."""
        for writer in self.writers.values():
            writer.discard()
            if not self._committed:
                writer.target.unlink(missing_ok=True)
        if not self._committed and isinstance(self._artifacts, Path):
            shutil.rmtree(self._artifacts, ignore_errors=True)
