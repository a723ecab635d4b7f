"""The lake: one Parquet file per (table, run) under `lake/<table>/run_id=<key>/data.parquet`.

The lake is the source of truth (the DuckDB warehouse is views over it). Each partition is a
single file, written to a temporary name in its own directory and renamed into place, so a
re-ingest replaces exactly that run's rows and a crash leaves the previous file readable.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from evalpipe.core.atomic import PARTIAL_SUFFIX, fsync_path, partial_path, replace_durably
from evalpipe.storage.schemas import SCHEMAS, is_json_column

DATA_FILE = "data.parquet"
COMMITS_DIR = ".commits"
"""Journals of multi-table commits whose renames are under way (see `StagedPartitions`)."""


def partition_key(run_id: str) -> str:
    """Directory-safe form of a run id (which contains `/`): percent-encoded, reversible."""
    return quote(run_id, safe="")


def run_id_from_key(key: str) -> str:
    return unquote(key)


@dataclass(frozen=True)
class Lake:
    """A lake rooted at a directory; every method names the table it touches."""

    root: Path

    def table_dir(self, table: str) -> Path:
        if table not in SCHEMAS:
            raise KeyError(f"unknown lake table {table!r}; known: {', '.join(sorted(SCHEMAS))}")
        return self.root / table

    def partition_file(self, table: str, run_id: str) -> Path:
        return self.table_dir(table) / f"run_id={partition_key(run_id)}" / DATA_FILE

    def glob(self, table: str) -> str:
        """The Parquet glob a reader (DuckDB, Spark, ...) uses for the whole table."""
        return str(self.table_dir(table) / "run_id=*" / DATA_FILE)

    def has_data(self, table: str) -> bool:
        return any(self.table_dir(table).glob(f"run_id=*/{DATA_FILE}"))

    def run_ids(self, table: str) -> list[str]:
        directory = self.table_dir(table)
        if not directory.is_dir():
            return []
        return sorted(
            run_id_from_key(p.parent.name.removeprefix("run_id="))
            for p in directory.glob(f"run_id=*/{DATA_FILE}")
        )

    def read(self, table: str, run_id: str) -> pa.Table:
        return pq.read_table(self.partition_file(table, run_id))

    def writer(self, table: str, run_id: str) -> PartitionWriter:
        return PartitionWriter(self.partition_file(table, run_id), SCHEMAS[table])

    def stage(
        self, run_id: str, tables: Iterable[str], row_group_size: int = 64_000
    ) -> StagedPartitions:
        """Writers for one run's partitions of `tables` that `commit()` replaces together
        (first finishing any commit a crash interrupted)."""
        self.finish_interrupted_commits()
        return StagedPartitions(
            self.root,
            {
                table: PartitionWriter(
                    self.partition_file(table, run_id), SCHEMAS[table], row_group_size
                )
                for table in tables
            },
        )

    def finish_interrupted_commits(self) -> int:
        """Roll forward the multi-table commits a crash cut short: rename into place every staged
        file their journal names that is still there. A journal whose committer is alive (it
        holds the journal's lock) is left alone. Returns the number of commits finished."""
        directory = self.root / COMMITS_DIR
        finished = 0
        for journal in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            with open(journal) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if os.fstat(handle.fileno()).st_nlink == 0:
                    continue  # its committer finished and removed it while we waited
                for staged, target in json.load(handle)["renames"]:
                    if (self.root / staged).exists():
                        os.replace(self.root / staged, self.root / target)
                journal.unlink()
                finished += 1
        return finished

    def write(self, table: str, run_id: str, rows: pa.Table | Iterable[dict]) -> int:
        """Replace one run's partition of `table` with `rows`; returns the row count."""
        data = (
            rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), SCHEMAS[table])
        )
        with self.writer(table, run_id) as writer:
            writer.write_table(data)
        return data.num_rows

    def read_all(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """Every run's partition of `table` (an empty table with the schema when there is none)."""
        files = sorted(self.table_dir(table).glob(f"run_id=*/{DATA_FILE}"))
        schema = SCHEMAS[table]
        if not files:
            empty = pa.Table.from_pylist([], schema)
            return empty.select(columns) if columns else empty
        return ds.dataset([str(f) for f in files], schema=schema, format="parquet").to_table(
            columns=columns
        )

    def count_rows(self, table: str) -> int:
        """Rows of a run-partitioned or derived table, from Parquet metadata alone."""
        if table in SCHEMAS:
            files = [str(f) for f in self.table_dir(table).glob(f"run_id=*/{DATA_FILE}")]
        else:
            files = [str(self.derived_file(table))]
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)

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
    """Streams record batches into a temporary file; `commit` on a clean exit renames it into place.

    On an exception the temporary file is removed and the previous partition is untouched.
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
    """One run's partitions of several tables, written side by side and replaced together.

    `commit()` first finishes every temporary file, so a failure while writing (bad input, a full
    disk) replaces none of them; then it records the renames in a journal under the lake's
    `.commits/` and renames the files. A crash in the middle of the renames leaves the journal,
    and the next `Lake.stage` finishes them, so the tables never stay half old, half new. Leaving
    the `with` block without `commit()` discards everything.
    """

    def __init__(self, root: Path, writers: dict[str, PartitionWriter]) -> None:
        self.root = root
        self.writers = writers

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

    def commit(self) -> None:
        for table in self.writers:
            self.writer(table).finish()
        renames = [(w.staged, w.target) for w in self.writers.values()]
        with commit_journal(self.root, renames):
            for writer in self.writers.values():
                writer.publish()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()

    def discard(self) -> None:
        """Drop every staged file not yet published (all of them unless `commit()` ran)."""
        for writer in self.writers.values():
            writer.discard()


@contextmanager
def commit_journal(root: Path, renames: list[tuple[Path, Path]]) -> Iterator[None]:
    """A durable record of `renames` (paths under `root`), locked while the block runs.

    The journal appears under its final name only once written and locked, so a reader that can
    lock it knows its committer is gone (a process's locks die with it). The block's own errors
    remove it: only a crash leaves a journal behind."""
    directory = root / COMMITS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    journal = directory / f"{name}.json"
    pending = directory / f".{name}{PARTIAL_SUFFIX}"
    record = {"renames": [[str(a.relative_to(root)), str(b.relative_to(root))] for a, b in renames]}
    with open(pending, "x") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())
        os.replace(pending, journal)
        fsync_path(directory)
        try:
            yield
        finally:
            journal.unlink()
