"""What the ingest benchmarks share: the datadec-style DuckDB baseline's SQL and the
from-outside measurement of a process tree (wall time, CPU time, peak of the summed RSS).

`ingest_instances.py` (the inner instance ingest) and `ingest_end_to_end.py` (the `evalpipe
ingest` command) both use it, so they compare against the same baseline, measured the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

# The instance files of a run directory, by the lake table they feed.
TABLE_KINDS = {
    "predictions": "predictions.jsonl",
    "requests": "requests.jsonl",
    "recorded_inputs": "recorded-inputs.jsonl",
}
# What datadec selects from each kind: scalar columns as they are, nested ones as JSON text.
# Prediction rows carry no task name: it comes from the file name (`read_json(filename=true)`).
BASELINE_SELECT = {
    "predictions": (
        "regexp_extract(filename, 'task-[0-9]+-(.*)-predictions[.]jsonl$', 1) AS task_name, "
        "doc_id, native_id::VARCHAR AS native_id, label::VARCHAR AS label, task_hash, "
        "model_hash, to_json(metrics) AS metrics, to_json(model_output) AS model_output"
    ),
    "requests": (
        "task_name, doc_id, native_id::VARCHAR AS native_id, label::VARCHAR AS label, "
        "request_type, idx, to_json(doc) AS doc, to_json(request) AS request"
    ),
    "recorded_inputs": (
        "task_name, doc_id, native_id::VARCHAR AS native_id, label::VARCHAR AS label, "
        "to_json(doc) AS doc, to_json(requests) AS requests"
    ),
}


def sql_text(value: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def read_json_source(files: Sequence[str] | str, *, filename: bool) -> str:
    """The baseline's reader: DuckDB `read_json` over a list of files or one glob, every row
    sampled for the schema (`sample_size=-1`), columns united by name across files."""
    paths = sql_text(files) if isinstance(files, str) else f"[{', '.join(map(sql_text, files))}]"
    extra = ", filename=true" if filename else ""
    return (
        f"read_json({paths}, format='newline_delimited', union_by_name=true, sample_size=-1{extra})"
    )


def baseline_copy(
    con: duckdb.DuckDBPyConnection, table: str, run_id_sql: str, source: str, target: Path
) -> None:
    """One baseline query: `COPY (SELECT <run_id>, <table's columns> FROM <source>) TO parquet`."""
    query = f"SELECT {run_id_sql} AS run_id, {BASELINE_SELECT[table]} FROM {source}"
    con.execute(f"COPY ({query}) TO {sql_text(str(target))} (FORMAT parquet)")


# --- peak RSS of a process tree, sampled from outside ------------------------------------------


class TreeRss:
    """Samples the summed VmRSS of a process and its descendants in a background thread.

    A child that has been forked but has not exec'd yet (same command line as its parent, less
    than a second old) is left out: until its exec it shares every page with its parent, and its
    VmRSS would count the parent's memory twice for a few milliseconds (Dagster starting its
    compute-log processes from an 840 MB `evalpipe ingest` was once sampled at 1683 MB so)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        tree = {self.pid: 0}
        last_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_scan > 0.25:  # new descendants appear rarely: rescan /proc sparingly
                tree = descendants(self.pid)
                last_scan = now
            total = sum(
                rss_kb(pid)
                for pid, parent in tree.items()
                if pid == self.pid or not _fresh_fork(pid, parent)
            )
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(self.interval)


def descendants(root: int) -> dict[int, int]:
    """`root` and every process below it, each with its parent pid, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = {root}
    grew = True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= found
        grew = bool(found)
    return {pid: parents.get(pid, 0) for pid in tree}


def _fresh_fork(pid: int, parent: int) -> bool:
    """Whether `pid` is a copy of `parent` that has not exec'd yet (see `TreeRss`)."""
    try:
        if (
            Path(f"/proc/{pid}/cmdline").read_bytes()
            != Path(f"/proc/{parent}/cmdline").read_bytes()
        ):
            return False
        started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return False
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - started / os.sysconf("SC_CLK_TCK")
    return age < 1.0


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class TreeRun:
    """One measured command: wall seconds from start to exit, user + system CPU seconds of the
    process and the descendants it waited for, the peak of the sampled summed VmRSS, and the CPU
    seconds the rest of the machine used meanwhile (a busy neighbour slows the wall time)."""

    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    timed_out: bool
    other_cpu_seconds: float


def run_tree(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdout: Path,
    stderr: Path,
    timeout: float,
) -> TreeRun:
    """Run `command` to completion (its output to files), sampling its tree's memory.

    The command leads its own session, so a timeout kills all of it."""
    with stdout.open("wb") as out, stderr.open("wb") as err:
        machine_busy = busy_cpu_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        killed = threading.Event()
        with TreeRss(proc.pid) as rss:
            timer = threading.Timer(timeout, _kill_session, (proc.pid, killed))
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            seconds = time.perf_counter() - started
            machine_busy = busy_cpu_seconds() - machine_busy
        proc.returncode = os.waitstatus_to_exitcode(status)
    cpu_seconds = usage.ru_utime + usage.ru_stime
    return TreeRun(
        returncode=proc.returncode,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        peak_rss_mb=rss.peak_kb / 1024,
        timed_out=killed.is_set(),
        other_cpu_seconds=max(machine_busy - cpu_seconds, 0.0),
    )


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _kill_session(pid: int, killed: threading.Event) -> None:
    killed.set()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
