"""The ingest sensor's cost per tick with N run directories in the dumps root, all ingested.

This is what the daemon pays every SENSOR_INTERVAL_SECONDS in steady state: walk the root, stat
every file of every run directory, fingerprint each run and compare with the ledger in the
instance (`evalpipe.defs.ingest_state`). The tick runs the real sensor function on a real
instance (SQLite in a temporary DAGSTER_HOME) through Dagster's sensor context. The baseline,
in the same command, is the least any scan must do: `os.walk` plus one `stat` per file.

Run directories are copies of one small generated run, hard-linked (same files, no disk cost).

    .venv/bin/python benchmarks/sensor_tick.py --runs 10000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg

from evalpipe.core.config import load_settings
from evalpipe.definitions import build_definitions
from evalpipe.defs.ingest_state import Attempt, record_attempt
from evalpipe.defs.instance import write_instance_config
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.sources.olmes.reader import find_run_dirs
from evalpipe.sources.olmes.samples import generate_dumps
from evalpipe.sources.olmes.source import OlmesSource


def build_root(root: Path, runs: int) -> None:
    seed = root.parent / "seed"
    generate_dumps(seed, runs=1, tasks=6, instances=4)
    (template,) = find_run_dirs(seed)
    files = [p for p in template.iterdir() if p.is_file()]
    for i in range(runs):
        run_dir = root / f"dump-{i // 1000:02d}" / f"model-{i:05d}__main"
        run_dir.mkdir(parents=True)
        for f in files:
            os.link(f, run_dir / f.name)


def baseline(root: Path) -> int:
    n = 0
    for directory, _, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(directory, name))
            n += 1
    return n


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evalpipe-sensor-") as tmp:
        base = Path(tmp)
        dumps = base / "dumps"
        build_root(dumps, args.runs)
        settings = load_settings(
            {
                "EVALPIPE_HOME": str(base / "home"),
                "EVALPIPE_DUMPS": str(dumps),
                "EVALPIPE_SETTLE_SECONDS": "0",
                "DAGSTER_HOME": str(base / "dagster"),
            }
        )
        write_instance_config(settings)
        defs = build_definitions(settings)
        sensor = defs.resolve_sensor_def("olmes_sensor")
        with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
            # Steady state: every run directory ingested as it is now.
            for scan in OlmesSource().scan(dumps).runs:
                attempt = Attempt(scan.inventory.fingerprint, "ok", None, 0.0, time.time())
                record_attempt(instance, "olmes", scan.run_id, attempt)

            def tick():
                context = dg.build_sensor_context(
                    instance=instance,
                    resources={"evalpipe": EvalpipeHome.from_settings(settings)},
                )
                return sensor(context)

            walk_s, files = timed(lambda: baseline(dumps), args.repeats)
            tick_s, result = timed(tick, args.repeats)
    reason = getattr(result, "skip_reason", None)
    skip = getattr(reason, "skip_message", None) or ""
    requested = len(getattr(result, "run_requests", None) or [])
    print(f"run directories: {args.runs}, files: {files}")
    print(f"baseline os.walk + stat: {walk_s:.3f} s (median of {args.repeats})")
    print(f"sensor tick:             {tick_s:.3f} s (median of {args.repeats})")
    print(f"ratio tick / baseline:   {tick_s / walk_s:.1f}x")
    print(f"tick result: {requested} run requests; {skip}")


if __name__ == "__main__":
    main()
