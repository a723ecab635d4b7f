"""Benchmark: rebuilding the leaderboards, and answering `evalpipe leaderboard`/`significance`.

    .venv/bin/python benchmarks/leaderboard.py [--runs 2000] [--tasks 60] [--instances 5000]
        [--iterations 10000] [--repeat 3] [--workdir DIR] [--keep]

Writes a synthetic lake with `Lake.write` (not timed): `--runs` runs of `--tasks` task rows each
(one aggregate per 10 rows), every run `ok`, several revisions per model and one re-run in five
(so boards drop superseded rows), plus predictions of two runs with `--instances` paired 0/1
instances on one task. Then times:

(a) the rebuild, in this process: what the `leaderboards` asset does (read the lake,
    `build_leaderboards`, write the three derived tables) followed by what the `warehouse`
    asset does (`build_warehouse`);
(b) `evalpipe leaderboard` and (c) `evalpipe significance ... --iterations N`, each as a
    subprocess of the installed CLI: wall time including interpreter start-up and imports
    (median of `--repeat`; the target applies to it), and the same command called in this
    warm process (its own work). `evalpipe --help` alone shows the start-up share.

The answers are checked too: one leaderboard row per (model, revision), every instance paired.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from evalpipe.core.output import render
from evalpipe.results.leaderboard import build_leaderboards
from evalpipe.storage.lake import Lake
from evalpipe.storage.warehouse import build_warehouse, read_runs_with_status

EVALPIPE = Path(sys.executable).parent / "evalpipe"
TARGETS = {"rebuild": 10.0, "leaderboard": 2.0, "significance": 2.0}
MODELS_PER_REVISION = 400
REVISIONS = ("main", "step1000", "step2000", "step3000")
PAIRED_TASK = "task_00"
EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)


def run_id(i: int) -> str:
    return f"bench-{i % 4}/_eval_results/run_{i:05d}"


def task_names(n_tasks: int) -> list[tuple[str, bool]]:
    """(task_name, is_aggregate): every tenth row is an aggregate (a benchmark)."""
    return [
        (f"suite_{j // 10:02d}", True) if j % 10 == 9 else (f"task_{j:02d}", False)
        for j in range(n_tasks)
    ]


def run_tables(i: int, tasks: list[tuple[str, bool]], rng: np.random.Generator) -> dict:
    """One run's rows of runs, task_results, run_status and task_choices."""
    rid = run_id(i)
    # Runs beyond the first models x revisions are re-runs of earlier entries.
    entry = i % (MODELS_PER_REVISION * len(REVISIONS))
    model, revision = (
        f"org/model-{entry % MODELS_PER_REVISION:03d}",
        REVISIONS[entry // MODELS_PER_REVISION],
    )
    at = EPOCH + timedelta(minutes=i)
    scores = rng.uniform(0.2, 0.9, len(tasks))
    return {
        "runs": [
            {
                "run_id": rid,
                "dump": rid.split("/")[0],
                "model": model,
                "revision": revision,
                "n_tasks": sum(not agg for _, agg in tasks),
                "n_aggregates": sum(agg for _, agg in tasks),
                "duplicates_dropped": 0,
                "ingested_at": at,
            }
        ],
        "task_results": [
            {
                "run_id": rid,
                "task_name": name,
                "task_idx": None if agg else j,
                "is_aggregate": agg,
                "primary_metric": "macro" if agg else "acc_raw",
                "primary_score": float(scores[j]),
                "num_instances": 1000,
                "evaluated_at": at,
                "model_config": f'{{"model": "{model}", "revision": "{revision}"}}',
                "task_config": f'{{"task_name": "{name}", "num_shots": 5}}',
            }
            for j, (name, agg) in enumerate(tasks)
        ],
        "run_status": [{"run_id": rid, "status": "ok", "checked_at": at}],
        "task_choices": [
            {"run_id": rid, "task_name": name, "n_choices": 4, "generative": False}
            for name, agg in tasks
            if not agg
        ],
    }


def predictions(i: int, n: int, skill: float, rng: np.random.Generator) -> list[dict]:
    """`n` instances of the paired task, each right (1) with probability `skill`."""
    correct = (rng.random(n) < skill).astype(int)
    return [
        {
            "run_id": run_id(i),
            "task_name": PAIRED_TASK,
            "doc_id": doc_id,
            "metrics": f'{{"acc_raw": {c}, "acc_per_char": {c}}}',
        }
        for doc_id, c in enumerate(correct)
    ]


def build_lake(lake: Lake, n_runs: int, n_tasks: int, n_instances: int) -> None:
    """Every run's partitions, written by a few threads (Parquet writes release the GIL)."""
    tasks = task_names(n_tasks)
    rng = np.random.default_rng(0)
    writes = [
        (table, run_id(i), rows)
        for i in range(n_runs)
        for table, rows in run_tables(i, tasks, rng).items()
    ]
    writes += [
        ("predictions", run_id(i), predictions(i, n_instances, skill, rng))
        for i, skill in ((0, 0.60), (1, 0.63))
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda w: lake.write(*w), writes))


def rebuild(lake: Lake, warehouse: Path) -> None:
    """What the `leaderboards` then the `warehouse` assets do."""
    boards = build_leaderboards(
        read_runs_with_status(lake),
        lake.read_all("task_results").to_pandas(),
        lake.read_all("task_choices").to_pandas(),
    )
    for name, frame in boards.tables().items():
        lake.write_derived(name, pa.Table.from_pandas(frame, preserve_index=False))
    build_warehouse(lake, warehouse)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def cli_seconds(home: Path, argv: list[str], repeat: int) -> tuple[float, str]:
    """Median wall time of the CLI as a person runs it (start-up included), and its output."""
    env = {**os.environ, "EVALPIPE_HOME": str(home)}
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run([str(EVALPIPE), *argv], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times), done.stdout.decode()


def in_process_seconds(home: Path, argv: list[str]) -> float:
    """The same command called in this (warm) process: its own work, without start-up."""
    from evalpipe.cli import main as evalpipe_main

    os.environ["EVALPIPE_HOME"] = str(home)
    with contextlib.redirect_stdout(io.StringIO()):
        return timed(lambda: evalpipe_main(argv))


def measure(home: Path, args: argparse.Namespace) -> list[tuple]:
    """(step, wall seconds, in-process seconds, target) per timed step; checks the answers."""
    rebuild_s = timed(lambda: rebuild(Lake(home / "lake"), home / "warehouse.duckdb"))
    rows: list[tuple] = [("rebuild leaderboards + warehouse", rebuild_s, rebuild_s, "rebuild")]
    startup, _ = cli_seconds(home, ["--help"], args.repeat)
    rows.append(("evalpipe --help (start-up only)", startup, None, None))
    board = ["leaderboard", "--format", "json"]
    seconds, out = cli_seconds(home, board, args.repeat)
    expected = min(args.runs, MODELS_PER_REVISION * len(REVISIONS))
    assert len(json.loads(out)) == expected, "leaderboard: one row per (model, revision)"
    rows.append(("evalpipe leaderboard", seconds, in_process_seconds(home, board), "leaderboard"))
    significance = [
        "significance", run_id(0), run_id(1), "--task", PAIRED_TASK,
        "--iterations", str(args.iterations), "--format", "json",
    ]  # fmt: skip
    seconds, out = cli_seconds(home, significance, args.repeat)
    assert json.loads(out)["n_paired"] == args.instances, "significance: every instance paired"
    label = f"evalpipe significance ({args.instances} paired, {args.iterations} iterations)"
    rows.append((label, seconds, in_process_seconds(home, significance), "significance"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--instances", type=int, default=5000)
    parser.add_argument("--iterations", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--workdir", type=Path, help="an empty directory to build in (default: temporary)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    home = args.workdir or Path(tempfile.mkdtemp(prefix="evalpipe-bench-"))
    try:
        lake = Lake(home / "lake")
        print(f"writing {args.runs} runs x {args.tasks} tasks to {lake.root} ...", flush=True)
        seconds = timed(lambda: build_lake(lake, args.runs, args.tasks, args.instances))
        print(f"  written in {seconds:.1f} s (not part of any target)\n")
        table = [
            (step, wall, work, TARGETS.get(key), _verdict(wall, TARGETS.get(key)))
            for step, wall, work, key in measure(home, args)
        ]
        print(render(["step", "wall_s", "in_process_s", "target_s", "result"], table, "table"))
        return 0 if all(row[-1] != "FAIL" for row in table) else 1
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        elif args.keep:
            print(f"kept {home}")


def _verdict(seconds: float, target: float | None) -> str:
    if target is None:
        return ""
    return "PASS" if seconds < target else "FAIL"


if __name__ == "__main__":
    sys.exit(main())
