"""Benchmark: evalpipe's instance ingest against a datadec-style DuckDB baseline.

    .venv/bin/python benchmarks/ingest_instances.py [--size-gb 1.0] [--scale 4] [--workdir DIR]
        [--keep] [--repeat N]

Generates a run directory of at least `--size-gb` GB (and one `--scale` times larger) with the
sample generator, then times, each in its own subprocess:

(a) evalpipe: `ingest_instances` of the run into a fresh lake (its three Parquet partitions);
(b) the baseline, as datadec ingests dumps: per kind of file, DuckDB
    `read_json([...files...], format='newline_delimited', union_by_name=true, sample_size=-1)`
    with `to_json(...)` on nested columns, `COPY ... TO ... (FORMAT parquet)`, DuckDB defaults;

and evalpipe again on the larger run, to show how time and memory grow. With `--repeat N` the
contenders run N times in turn and the fastest run of each is reported (background load on a
shared machine only ever slows a run down).

Peak RSS is measured from outside: this process samples, every 20 ms, the summed VmRSS of the
contender and all its descendants (evalpipe runs in one process; DuckDB too). Sampling can miss a
spike shorter than the interval, so each child also reports its own `ru_maxrss` and the largest
`ru_maxrss` of its children; "bound" is own peak + children x largest child peak, an upper bound on
concurrent RSS. Wall time is measured inside the child around the work (interpreter start and
imports excluded for both contenders); "CPU s" is the user + system time of the contender and its
children over the same span, which other load on the machine affects much less than wall time.
Row counts of both outputs are compared after timing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _measure import TABLE_KINDS, TreeRss, baseline_copy, read_json_source, sql_text

ROOT = Path(__file__).resolve().parent.parent
INSTANCES_PER_GB = 15_000  # a runs=1, tasks=10 sample run of 15000 instances is 1.04 GB
RUN_ID = "bench/_eval_results/run"


# --- inside a contender subprocess -------------------------------------------------------------


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(work: Callable[[], int]) -> dict[str, float]:
    """Wall and CPU seconds of `work` (children included), and this process's memory peaks."""
    cpu, started = _cpu_seconds(), time.perf_counter()
    children = work()
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "children": children,
        "own_peak_mb": own,
        "child_peak_mb": child,
    }


def run_evalpipe(run_dir: Path, out: Path) -> dict[str, float]:
    from evalpipe.sources.olmes.instances import ingest_instances
    from evalpipe.storage.lake import Lake

    return _timed(lambda: ingest_instances(RUN_ID, run_dir, Lake(out)).workers)


def run_baseline(run_dir: Path, out: Path) -> dict[str, float]:
    import duckdb

    out.mkdir(parents=True)
    con = duckdb.connect()

    def work() -> int:
        for table, kind in TABLE_KINDS.items():
            files = sorted(str(p) for p in run_dir.glob(f"task-*-{kind}"))
            # prediction rows lack task_name: it comes from the file name
            source = read_json_source(files, filename=table == "predictions")
            baseline_copy(con, table, sql_text(RUN_ID), source, out / f"{table}.parquet")
        return 0

    return _timed(work)


# --- in the driving process --------------------------------------------------------------------


def measure(contender: str, run_dir: Path, out: Path) -> dict[str, float]:
    """Run one contender in a fresh interpreter and sample its process tree's memory."""
    command = [sys.executable, __file__, "--child", contender, str(run_dir), str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    with TreeRss(proc.pid) as rss:
        stdout, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{contender} failed (exit {proc.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["sampled_peak_mb"] = rss.peak_kb / 1024
    result["bound_mb"] = result["own_peak_mb"] + result["children"] * result["child_peak_mb"]
    return result


def generate(workdir: Path, size_gb: float, created: list[Path]) -> Path:
    """A run directory of at least `size_gb` GB (1e9 bytes), reused when already complete."""
    from evalpipe.sources.olmes.samples import generate_dumps, run_dir_bytes

    instances = math.ceil(size_gb * INSTANCES_PER_GB)
    root = workdir / f"dumps-{instances}"
    done = root / ".complete"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"generating {instances} instances per task under {root} ...", flush=True)
        created.append(root)
        generate_dumps(root, runs=1, tasks=10, instances=instances)
        done.touch()
    (run_dir,) = [p.parent for p in root.rglob("metrics-all.jsonl")]
    assert run_dir_bytes(run_dir) >= size_gb * 1e9, "sample smaller than requested"
    return run_dir


def input_bytes(run_dir: Path) -> int:
    return sum(p.stat().st_size for k in TABLE_KINDS.values() for p in run_dir.glob(f"task-*-{k}"))


def row_counts(paths: dict[str, Path]) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {table: pq.ParquetFile(path).metadata.num_rows for table, path in paths.items()}


def evalpipe_outputs(lake_root: Path) -> dict[str, Path]:
    from evalpipe.storage.lake import Lake

    return {t: Lake(lake_root).partition_file(t, RUN_ID) for t in TABLE_KINDS}


def row(label: str, mb: float, result: dict[str, float]) -> str:
    seconds = result["seconds"]
    return (
        f"| {label:<26} | {mb:>8.0f} | {seconds:>6.2f} | {mb / seconds:>5.0f} "
        f"| {result['cpu_seconds']:>5.1f} | {result['sampled_peak_mb']:>11.0f} "
        f"| {result['bound_mb']:>8.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated dumps for reuse")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each contender (the best is kept)"
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("CONTENDER", "RUN_DIR", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        contender, run_dir, out = args.child
        runner = run_evalpipe if contender == "evalpipe" else run_baseline
        print(json.dumps(runner(Path(run_dir), Path(out))))
        return
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ingest-", dir=out))
    created: list[Path] = []
    try:
        bench(workdir, args.size_gb, args.scale, args.repeat, created)
    finally:
        if not args.keep:
            for path in created if args.workdir else [workdir]:
                shutil.rmtree(path, ignore_errors=True)


def best_of(repeat: int, contenders: dict[str, tuple[Path, Path]]) -> dict[str, dict[str, float]]:
    """Run the contenders in turn `repeat` times; keep each one's fastest run and its highest
    memory (background load on a shared machine only ever makes a run slower)."""
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for name, (run_dir, out) in contenders.items():
            shutil.rmtree(out, ignore_errors=True)
            result = measure(name.split()[0], run_dir, out)
            if name in best:
                peaks = {k: max(best[name][k], result[k]) for k in ("sampled_peak_mb", "bound_mb")}
                result = min(best[name], result, key=lambda r: r["seconds"]) | peaks
            best[name] = result
    return best


def bench(workdir: Path, size_gb: float, scale: int, repeat: int, created: list[Path]) -> None:
    """Generate (or reuse) both runs, measure the contenders, print the table."""
    small = generate(workdir, size_gb, created)
    large = generate(workdir, size_gb * scale, created)
    outputs = workdir / "outputs"
    created.append(outputs)
    mb, large_mb = input_bytes(small) / 1e6, input_bytes(large) / 1e6
    print(f"machine: {os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.2f}")
    results = best_of(
        repeat,
        {
            "evalpipe": (small, outputs / "evalpipe"),
            "baseline": (small, outputs / "baseline"),
        },
    )
    results |= best_of(repeat, {"evalpipe large": (large, outputs / "evalpipe-large")})
    ours, base, ours_large = results["evalpipe"], results["baseline"], results["evalpipe large"]
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print(
        "| contender                  | input MB | wall s |  MB/s | CPU s | peak RSS MB | bound MB |"
    )
    print(
        "|----------------------------|---------:|-------:|------:|------:|------------:|---------:|"
    )
    print(row(f"evalpipe ({size_gb:g} GB)", mb, ours))
    print(row(f"duckdb baseline ({size_gb:g} GB)", mb, base))
    print(row(f"evalpipe ({size_gb * scale:g} GB)", large_mb, ours_large))
    speedup = base["seconds"] / ours["seconds"]
    time_growth = ours_large["seconds"] / ours["seconds"]
    rss_growth = ours_large["sampled_peak_mb"] / ours["sampled_peak_mb"]
    print(f"\nevalpipe is {speedup:.2f}x faster than the baseline (wall time, best of {repeat})")
    print(
        f"{large_mb / mb:.2f}x the input: {time_growth:.2f}x the time, {rss_growth:.2f}x the peak RSS"
    )
    ours_rows = row_counts(evalpipe_outputs(outputs / "evalpipe"))
    base_rows = row_counts({t: outputs / "baseline" / f"{t}.parquet" for t in TABLE_KINDS})
    verdict = "same" if ours_rows == base_rows else "DIFFERENT"
    print(f"row counts: evalpipe {ours_rows}, baseline {base_rows}: {verdict}")


if __name__ == "__main__":
    main()
