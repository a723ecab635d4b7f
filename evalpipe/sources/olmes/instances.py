"""Instance tables of one run (`predictions`, `requests`, `recorded_inputs`), streamed into the lake.

A run directory holds gigabytes of per-instance JSONL. `ingest_instances` streams every
`-predictions.jsonl`, `-requests.jsonl` and `-recorded-inputs.jsonl` file into the run's three
partitions and replaces them together, only when every line of every file parsed.

Parallel design (measured on a 2-core machine; figures in `benchmarks/README.md`). Per GB of
sample dumps, reading the files takes ~0.2 CPU-seconds, converting the lines with the C scanner
(`_instance_scan.c`, via `instance_parse`) ~0.6 and encoding the Parquet files (zstd) ~0.8. So:

- every file is cut into chunks of whole lines (`chunk_bytes`, found by seeking to a newline);
- parser threads (one per core) read and parse chunks into Arrow record batches; the scanner runs
  without the GIL, so they run in parallel with each other and with the writer (an install
  without the C scanner parses ~15x slower in pure Python, holding the GIL: one parser thread);
- the calling thread regroups the batches into row groups of `batch_rows` rows and writes the
  three Parquet files (Arrow's writer also releases the GIL), in file order, so the tables are the
  same whatever the number of workers.

Byte-range chunks balance the cores whatever the files' sizes; one thread per table would not
(requests are ~85% of the bytes). At most two chunks per worker are in flight, so memory is bounded
by `chunk_bytes` and `batch_rows`, never by file size.

Lines are numbered per chunk by the parser; the writing thread adds the lines of the chunks
before, so an error names the file and its true line number.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from evalpipe.core.jsonl import DumpFormatError
from evalpipe.sources.olmes.instance_parse import ChunkJob, ChunkResult, run_job
from evalpipe.sources.olmes.reader import (
    METRICS_ALL,
    Finding,
    TaskFiles,
    index_task_files,
    read_metrics_all,
    task_name_from_rows,
)
from evalpipe.sources.olmes.scanner import scanner_implementation
from evalpipe.storage.lake import Lake, PartitionWriter, StagedPartitions

TABLES = ("predictions", "requests", "recorded_inputs")
KIND_TABLES = {
    "predictions.jsonl": "predictions",
    "requests.jsonl": "requests",
    "recorded-inputs.jsonl": "recorded_inputs",
}
DEFAULT_BATCH_ROWS = 8192
DEFAULT_CHUNK_BYTES = 4 << 20
MAX_CHUNK_BYTES = 256 << 20  # keeps a chunk's JSON text within 32-bit Arrow string offsets
ROW_GROUP_MAX_BYTES = 128 << 20  # wide rows: cut a row group early rather than hold more
MAX_WORKERS = 4  # the one writing thread (~0.8 CPU-s per GB, as much as a parser) is the limit
IN_FLIGHT_PER_WORKER = 2  # one being parsed, one queued: workers never wait for a job

Outcome = ChunkResult | DumpFormatError


@dataclass
class InstanceIngestReport:
    """What one run's instance ingest wrote; `rows` is table → task name → rows."""

    run_id: str
    rows: dict[str, dict[str, int]]
    bytes_read: int
    seconds: float
    files: int
    workers: int
    row_task_name_mismatches: int
    findings: list[Finding] = field(default_factory=list)
    nonfinite_metrics: dict[str, int] = field(default_factory=dict)
    """Task name → predictions rows whose metrics hold NaN or Infinity."""

    @property
    def table_rows(self) -> dict[str, int]:
        return {table: sum(tasks.values()) for table, tasks in self.rows.items()}

    @property
    def mb_per_second(self) -> float:
        return self.bytes_read / 1e6 / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class SourceFile:
    """One instance file and the table and task name its rows get."""

    table: str
    task_name: str
    path: Path
    size: int


def table_task_names(run_dir: Path, task_files: dict[str, TaskFiles]) -> dict[str, str]:
    """File task name → task name in the tables.

    A task of `metrics-all.jsonl` keeps its name (files were matched to it by that name); a task
    present only as artifacts takes its rows' `task_name`, else its file name's, as the task-level
    tables do.
    """
    known: set[str] = set()
    if (run_dir / METRICS_ALL).is_file():
        known = {r.task_name for r in read_metrics_all(run_dir / METRICS_ALL).records}
    return {
        name: name if name in known else task_name_from_rows(files)
        for name, files in task_files.items()
    }


def plan_sources(run_dir: Path) -> tuple[list[SourceFile], list[Finding]]:
    """The run's instance files, by table then task; tasks are matched by name, not prefix.

    When one task has two files of a kind (a re-run under another prefix), `index_task_files`
    keeps the newer and reports a finding: ingesting both would duplicate the task's rows.
    """
    try:
        names = sorted(os.listdir(run_dir))
    except OSError as exc:
        raise DumpFormatError(run_dir, None, f"cannot list: {exc.strerror or exc}") from exc
    task_files, findings = index_task_files(run_dir, names)
    task_names = table_task_names(run_dir, task_files)
    sources = [
        SourceFile(table, task_names[task], path, path.stat().st_size)
        for task, files in task_files.items()
        for kind, path in files.paths.items()
        if (table := KIND_TABLES.get(kind))
    ]
    sources.sort(key=lambda s: (TABLES.index(s.table), s.path.name))
    return sources, findings


def _next_line_start(handle: BinaryIO, position: int, size: int) -> int:
    """The first offset at or after `position` that starts a line (or the file's end)."""
    base = position - 1
    handle.seek(base)
    while base < size:
        block = handle.read(1 << 16)
        if not block:
            break
        newline = block.find(b"\n")
        if newline >= 0:
            return base + newline + 1
        base += len(block)
    return size


def chunk_jobs(source: SourceFile, run_id: str, chunk_bytes: int) -> list[ChunkJob]:
    """Cut one file into jobs of about `chunk_bytes`, each ending just after a newline."""
    jobs = []
    start = 0
    with source.path.open("rb") as handle:
        while start < source.size:
            end = min(start + chunk_bytes, source.size)
            if end < source.size:
                end = _next_line_start(handle, end, source.size)
            path = str(source.path)
            jobs.append(ChunkJob(path, start, end, source.table, source.task_name, run_id))
            start = end
    return jobs


def _parsed(job: ChunkJob) -> Outcome:
    try:
        return run_job(job)
    except DumpFormatError as exc:
        return exc


def _outcomes(jobs: list[ChunkJob], workers: int) -> Iterator[Outcome]:
    """Each job's outcome in job order, while `workers` threads parse up to two jobs ahead each.
    Closing the iterator early (an error) drops the jobs not started."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="evalpipe-parse")
    pending: deque[Future[Outcome]] = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(_parsed, job))
            if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _TableSink:
    """Regroups parsed batches into row groups of `batch_rows` rows (fewer for very wide rows)."""

    def __init__(self, writer: PartitionWriter, batch_rows: int) -> None:
        self.writer = writer
        self.batch_rows = batch_rows
        self.pending: list[pa.RecordBatch] = []
        self.rows = 0
        self.bytes = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch.select(self.writer.schema.names))
        self.rows += batch.num_rows
        self.bytes += batch.nbytes
        if self.bytes >= ROW_GROUP_MAX_BYTES:
            self.flush(self.rows)
        elif self.rows >= self.batch_rows:
            self.flush(self.rows - self.rows % self.batch_rows)

    def flush(self, rows: int | None = None) -> None:
        """Write the first `rows` pending rows (all by default); keep the rest pending."""
        if not self.pending:
            return
        table = pa.Table.from_batches(self.pending)
        rows = table.num_rows if rows is None else rows
        self.writer.write_table(table.slice(0, rows))
        rest = table.slice(rows)
        self.pending = rest.to_batches()
        self.rows = rest.num_rows
        self.bytes = rest.nbytes


@dataclass
class _FileTally:
    """Per-file progress: lines before the next chunk (to number errors), rows, disagreements."""

    source: SourceFile
    chunks_left: int
    lines: int = 0
    rows: int = 0
    mismatches: int = 0
    mismatch_example: str | None = None
    nonfinite: int = 0

    def add(self, job: ChunkJob, outcome: Outcome) -> ChunkResult:
        if isinstance(outcome, DumpFormatError):
            line = None if outcome.line is None else self.lines + outcome.line
            raise DumpFormatError(job.path, line, outcome.problem)
        self.lines += outcome.lines
        self.rows += sum(b.num_rows for b in outcome.batches)
        self.mismatches += outcome.mismatches
        self.mismatch_example = self.mismatch_example or outcome.mismatch_example
        if job.table == "predictions":
            self.nonfinite += sum(nonfinite_rows(b.column("metrics")) for b in outcome.batches)
        self.chunks_left -= 1
        return outcome

    def finding(self) -> Finding:
        return Finding(
            "row_task_name_mismatch",
            self.source.path,
            f"{self.mismatches} rows name task {self.mismatch_example!r}; "
            f"stored under the file's task {self.source.task_name!r}",
        )


NONFINITE = r"(?:^|[\[:,]\s*)-?(?:NaN|Infinity)\b"
"""A bare NaN or (-)Infinity token in JSON text (Python's json writes them; strict JSON has none),
not inside a string: it follows `[`, `:` or `,`."""


def nonfinite_rows(metrics: pa.Array) -> int:
    """Rows whose metrics JSON holds NaN or Infinity (counted in Arrow, without parsing)."""
    return pc.sum(pc.match_substring_regex(metrics, NONFINITE)).as_py() or 0


def default_workers() -> int:
    """One parser per core, but one only on the pure-Python scanner: it holds the GIL, so a second
    parser only contends for it (on 2 cores: never faster; 20.7 s against 17.3 s for a 590 MB
    run on an idle machine) and holds two more chunks in memory."""
    if scanner_implementation() == "python":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_WORKERS))


def ingest_instances(
    run_id: str,
    run_dir: Path,
    lake: Lake,
    *,
    workers: int | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: Callable[[str], None] | None = None,
) -> InstanceIngestReport:
    """Replace the run's `predictions`, `requests` and `recorded_inputs` partitions, all three
    or none (see `write_instances`)."""
    with lake.stage(run_id, TABLES, row_group_size=batch_rows) as staged:
        report = write_instances(
            run_id,
            run_dir,
            staged,
            workers=workers,
            batch_rows=batch_rows,
            chunk_bytes=chunk_bytes,
            progress=progress,
        )
        staged.commit()
    return report


def write_instances(
    run_id: str,
    run_dir: Path,
    staged: StagedPartitions,
    *,
    workers: int | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: Callable[[str], None] | None = None,
) -> InstanceIngestReport:
    """Stream the run's instance files into the staged `predictions`, `requests` and
    `recorded_inputs` partitions; the caller commits them (with the run's other tables).

    On any error (a `DumpFormatError` naming file and line) nothing is committed, so the previous
    partitions stay as they were. `workers` parser threads (by default one per core, at most 4)
    parse while this thread writes. A row whose own `task_name` differs from its file's task is
    stored under the file's task and counted in `row_task_name_mismatches` (with a finding naming
    the file).
    """
    if batch_rows < 1 or not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"need batch_rows >= 1 and 0 < chunk_bytes <= {MAX_CHUNK_BYTES}")
    started = time.perf_counter()
    say = progress or (lambda _: None)
    sources, findings = plan_sources(run_dir)
    tallies = {}
    jobs = []
    for source in sources:
        file_jobs = chunk_jobs(source, run_id, chunk_bytes)
        tallies[str(source.path)] = _FileTally(source, len(file_jobs))
        jobs.extend(file_jobs)
    workers = min(workers or default_workers(), max(len(jobs), 1))
    outcomes = _outcomes(jobs, workers)
    sinks = {table: _TableSink(staged.writer(table), batch_rows) for table in TABLES}
    with closing(outcomes):
        for job, outcome in zip(jobs, outcomes, strict=True):
            tally = tallies[job.path]
            for batch in tally.add(job, outcome).batches:
                sinks[job.table].add(batch)
            if tally.chunks_left == 0:
                say(f"{job.table}: {tally.rows} rows of {job.task_name} ({tally.source.path.name})")
    for sink in sinks.values():
        sink.flush()
    for table in TABLES:
        staged.writer(table).finish()
    rows: dict[str, dict[str, int]] = {table: {} for table in TABLES}
    for tally in tallies.values():
        task_rows = rows[tally.source.table]
        task_rows[tally.source.task_name] = task_rows.get(tally.source.task_name, 0) + tally.rows
    findings += [t.finding() for t in tallies.values() if t.mismatches]
    report = InstanceIngestReport(
        run_id=run_id,
        rows=rows,
        bytes_read=sum(s.size for s in sources),
        seconds=time.perf_counter() - started,
        files=len(sources),
        workers=workers,
        row_task_name_mismatches=sum(t.mismatches for t in tallies.values()),
        findings=findings,
        nonfinite_metrics={
            t.source.task_name: t.nonfinite for t in tallies.values() if t.nonfinite
        },
    )
    say(f"{run_id}: {report.table_rows} rows in {report.seconds:.1f} s")
    return report
