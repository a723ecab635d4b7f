"""Instance tables of one run (`predictions`, `requests`, `recorded_inputs`), streamed into the lake.

A run directory holds gigabytes of per-instance JSONL. `ingest_instances` streams every
`-predictions.jsonl`, `-requests.jsonl` and `-recorded-inputs.jsonl` file into the run's three
partitions and replaces them together, only when every line of every file parsed.

Parallel design (measured on a 2-core machine; figures in `benchmarks/README.md`). Parsing is the
cost: per GB of sample dumps, msgspec reading the lines (nested values kept as their source text)
and building Arrow arrays takes ~2.5 CPU-seconds in the parsers (with their start-up); encoding the
Parquet files (zstd) ~1.5. So:

- every file is cut into chunks of whole lines (`chunk_bytes`, found by seeking to a newline);
- worker processes (one per core) parse chunks into Arrow record batches and send them back as
  Arrow IPC streams over a pipe;
- this process only regroups the batches into row groups of `batch_rows` rows and writes the
  three Parquet files, in file order, so the tables are the same whatever the number of workers.

Byte-range chunks balance the cores whatever the files' sizes; one process per table would not
(requests are ~85% of the bytes). At most two chunks per worker are in flight, so memory is
bounded by `chunk_bytes` and `batch_rows`, never by file size (~420 MB for three processes at 1 GB
and at 4 GB). Workers are started with `subprocess` as `python -m evalpipe.instance_parse` rather
than with `multiprocessing`: `spawn` and `forkserver` re-import the parent's `__main__` (the Dagster
or pytest command, which imports everything) in each worker, and `fork` of a threaded Dagster
process is unsafe. A worker imports only `instance_parse` and exits when its job pipe closes, so
none outlives a failed or killed ingest.

Lines are numbered per chunk in the worker; this process adds the lines of the chunks before, so
an error names the file and its true line number.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from evalpipe.formats.jsonl import DumpFormatError
from evalpipe.formats.olmes import (
    METRICS_ALL,
    Finding,
    TaskFiles,
    index_task_files,
    read_metrics_all,
    task_name_from_rows,
)
from evalpipe.instance_parse import (
    HEADER,
    REPLY_FORMAT_ERROR,
    REPLY_OK,
    ChunkJob,
    ChunkResult,
    job_line,
    run_job,
)
from evalpipe.lake import Lake, PartitionWriter

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
MAX_WORKERS = 4  # one writer keeps up with about two parsers (~1.4 CPU s per GB each)
IN_FLIGHT_PER_WORKER = 2  # one being parsed, one queued: workers never wait for a job
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
PIPE_BYTES = 1 << 20  # the unprivileged maximum (/proc/sys/fs/pipe-max-size)
WORKER_ENV = {
    "OPENBLAS_NUM_THREADS": "1",  # numpy's BLAS threads would only spin
    # glibc: keep the ~1 MB block buffers on the heap instead of a fresh mmap (and page faults)
    # per buffer: -20% parser CPU at 1 GB, same peak RSS (~120 MB per parser)
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=16777216:glibc.malloc.trim_threshold=33554432",
}

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


def _widen_pipe(stream: BinaryIO | None) -> None:
    """Linux: a 1 MiB pipe instead of 64 KiB moves a reply in a few wake-ups, not dozens."""
    with suppress(AttributeError, OSError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[union-attr]


@dataclass
class _Reply:
    worker: int
    job_id: int | None  # None: the worker's pipe closed
    kind: int = REPLY_OK
    meta: dict = field(default_factory=dict)
    body: bytes = b""


class _WorkerPool:
    """Parser processes fed jobs on stdin; a thread per worker drains its replies into a queue.

    Draining in threads means a worker never blocks on a full pipe while this process is busy
    writing Parquet.
    """

    def __init__(self, count: int) -> None:
        env = dict(os.environ, **WORKER_ENV)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        command = [sys.executable, "-m", "evalpipe.instance_parse"]
        self.procs: list[subprocess.Popen] = []
        try:
            for _ in range(count):
                self.procs.append(
                    subprocess.Popen(
                        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
                    )
                )
        except OSError:
            for proc in self.procs:
                proc.kill()
            raise
        for proc in self.procs:
            _widen_pipe(proc.stdout)
        self.load = [0] * count
        self.replies: queue.Queue[_Reply] = queue.Queue()
        self.threads = [
            threading.Thread(target=self._drain, args=(i, p.stdout), daemon=True)
            for i, p in enumerate(self.procs)
        ]
        for thread in self.threads:
            thread.start()

    def _drain(self, worker: int, stream: BinaryIO) -> None:
        while len(header := stream.read(HEADER.size)) == HEADER.size:
            job_id, kind, meta_size, body_size = HEADER.unpack(header)
            meta, body = stream.read(meta_size), stream.read(body_size)
            if len(meta) < meta_size or len(body) < body_size:
                break  # the worker died mid-reply
            self.replies.put(_Reply(worker, job_id, kind, json.loads(meta), body))
        self.replies.put(_Reply(worker, None))

    def send(self, job_id: int, job: ChunkJob) -> None:
        worker = self.load.index(min(self.load))
        self.load[worker] += 1
        stdin = self.procs[worker].stdin
        assert stdin is not None
        stdin.write(job_line(job_id, job))
        stdin.flush()

    def receive(self) -> _Reply:
        reply = self.replies.get()
        if reply.job_id is None:
            proc = self.procs[reply.worker]
            raise RuntimeError(
                f"instance parser process {proc.pid} exited (code {proc.wait()}); see its stderr"
            )
        self.load[reply.worker] -= 1
        return reply

    def close(self, abort: bool) -> None:
        for proc in self.procs:
            if abort:
                proc.kill()
            if proc.stdin is not None:
                with suppress(BrokenPipeError):
                    proc.stdin.close()
        for proc in self.procs:
            proc.wait()
        for thread in self.threads:
            thread.join()


def _outcome(reply: _Reply, job: ChunkJob) -> Outcome:
    if reply.kind == REPLY_OK:
        batches = list(pa.ipc.open_stream(reply.body)) if reply.body else []
        return ChunkResult(
            batches, reply.meta["lines"], reply.meta["mismatches"], reply.meta["mismatch_example"]
        )
    if reply.kind == REPLY_FORMAT_ERROR:
        return DumpFormatError(job.path, reply.meta["line"], reply.meta["problem"])
    raise RuntimeError(f"instance parser failed on {job.path}:\n{reply.meta['problem']}")


def _parallel_outcomes(jobs: list[ChunkJob], workers: int) -> Iterator[Outcome]:
    """Each job's outcome in job order, while the workers parse up to two jobs ahead each."""
    pool = _WorkerPool(workers)
    finished = False
    try:
        ready: dict[int, _Reply] = {}
        sent = 0
        for index, job in enumerate(jobs):
            while sent < len(jobs) and sent < index + IN_FLIGHT_PER_WORKER * workers:
                pool.send(sent, jobs[sent])
                sent += 1
            while index not in ready:
                reply = pool.receive()
                ready[reply.job_id] = reply  # type: ignore[index]
            yield _outcome(ready.pop(index), job)
        finished = True
    finally:
        pool.close(abort=not finished)


def _serial_outcomes(jobs: list[ChunkJob]) -> Iterator[Outcome]:
    for job in jobs:
        try:
            yield run_job(job)
        except DumpFormatError as exc:
            yield exc


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: parsed rows hold no cycles, and the collections that millions of
    fresh objects trigger cost ~10% of a parse (worker processes run without it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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

    def add(self, job: ChunkJob, outcome: Outcome) -> ChunkResult:
        if isinstance(outcome, DumpFormatError):
            line = None if outcome.line is None else self.lines + outcome.line
            raise DumpFormatError(job.path, line, outcome.problem)
        self.lines += outcome.lines
        self.rows += sum(b.num_rows for b in outcome.batches)
        self.mismatches += outcome.mismatches
        self.mismatch_example = self.mismatch_example or outcome.mismatch_example
        self.chunks_left -= 1
        return outcome

    def finding(self) -> Finding:
        return Finding(
            "row_task_name_mismatch",
            self.source.path,
            f"{self.mismatches} rows name task {self.mismatch_example!r}; "
            f"stored under the file's task {self.source.task_name!r}",
        )


def default_workers() -> int:
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
    """Replace the run's `predictions`, `requests` and `recorded_inputs` partitions.

    All or nothing: on any error (a `DumpFormatError` naming file and line) the previous
    partitions stay as they were and no temporary file remains. `workers=1` parses in this
    process; by default one worker process per core (at most 4). A row whose own `task_name`
    differs from its file's task is stored under the file's task and counted in
    `row_task_name_mismatches` (with a finding naming the file).
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
    outcomes = _parallel_outcomes(jobs, workers) if workers > 1 else _serial_outcomes(jobs)
    with _gc_paused(), lake.stage(run_id, TABLES, row_group_size=batch_rows) as staged:
        sinks = {table: _TableSink(staged.writer(table), batch_rows) for table in TABLES}
        with closing(outcomes):
            for job, outcome in zip(jobs, outcomes, strict=True):
                tally = tallies[job.path]
                for batch in tally.add(job, outcome).batches:
                    sinks[job.table].add(batch)
                if tally.chunks_left == 0:
                    say(
                        f"{job.table}: {tally.rows} rows of {job.task_name} ({tally.source.path.name})"
                    )
        for sink in sinks.values():
            sink.flush()
        staged.commit()
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
    )
    say(f"{run_id}: {report.table_rows} rows in {report.seconds:.1f} s")
    return report
