"""`evalpipe`: the everyday questions and the writes, as thin commands over the library.

Commands that write go through the Dagster definitions and instance (so the UI shows what the
CLI did); commands that read open the warehouse read-only.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb

from evalpipe.config import Settings, load_settings
from evalpipe.output import render
from evalpipe.warehouse import WarehouseMissing, query

DEMO_SHAPE = {"runs": 5, "tasks": 11, "instances": 40, "seed": 7}

RUN_SUMMARY_SQL = """
SELECT r.run_id, r.model, r.revision, r.n_tasks, r.n_aggregates,
       string_agg(t.task_name || '=' || printf('%.4f', t.primary_score), ', ' ORDER BY t.task_name)
         AS aggregate_scores
FROM runs r LEFT JOIN task_results t ON t.run_id = r.run_id AND t.is_aggregate
GROUP BY ALL ORDER BY r.run_id
"""


def _settings(args: argparse.Namespace) -> Settings:
    env = dict(os.environ)
    if getattr(args, "dumps", None):
        env["EVALPIPE_DUMPS"] = str(args.dumps)
    return load_settings(env)


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.dumps.is_dir():
        print(
            f"error: dumps root {settings.dumps} does not exist (set EVALPIPE_DUMPS or pass --dumps)",
            file=sys.stderr,
        )
        return 2
    return _ingest_and_report(settings, force=args.force, verbose=args.verbose)


def _ingest_and_report(settings: Settings, *, force: bool, verbose: bool = False) -> int:
    from evalpipe.definitions import build_definitions
    from evalpipe.defs.runner import get_instance, ingest

    print(f"ingesting run directories under {settings.dumps}")
    report = ingest(
        build_definitions(settings),
        settings,
        get_instance(settings),
        force=force,
        log_level="DEBUG" if verbose else "CRITICAL",
    )
    print(
        f"{report.scanned} run directories: {len(report.outcomes) - len(report.failed)} ingested, "
        f"{report.skipped_unchanged} unchanged, {len(report.failed)} failed"
    )
    if report.refreshed or settings.warehouse.exists():
        columns, rows = query(settings.warehouse, RUN_SUMMARY_SQL)
        print(render(columns, rows))
    if report.failed:
        print("\nfailed run directories:", file=sys.stderr)
        for outcome in report.failed:
            print(f"  {outcome.run_id}", file=sys.stderr)
            for message in outcome.errors:
                print(f"    {message}", file=sys.stderr)
        return 1
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    try:
        columns, rows = query(load_settings().warehouse, args.query)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(columns, rows, args.format))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the bundled sample dumps if absent, ingest them, print the result."""
    from evalpipe.samples import generate_dumps

    settings = load_settings()
    if not settings.dumps.exists() or not any(settings.dumps.iterdir()):
        print(f"generating sample dumps in {settings.dumps} ({DEMO_SHAPE})")
        generate_dumps(settings.dumps, **DEMO_SHAPE)
    settings = load_settings({**os.environ, "EVALPIPE_SETTLE_SECONDS": "0"})
    status = _ingest_and_report(settings, force=False)
    print(
        f"\nwarehouse: {settings.warehouse}\n"
        'query it:   evalpipe sql "SELECT * FROM task_results LIMIT 5"\n'
        "see it:     make dev, then open http://127.0.0.1:3000 (asset graph, runs, partitions)"
    )
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalpipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "ingest", help="ingest new or changed run directories (what the sensor does)"
    )
    p.add_argument("--dumps", type=Path, help="dumps root (default: $EVALPIPE_DUMPS)")
    p.add_argument("--force", action="store_true", help="re-ingest even unchanged run directories")
    p.add_argument("--verbose", action="store_true", help="show Dagster's own event log")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("sql", help="run a read-only SQL query on the warehouse")
    p.add_argument("query")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("demo", help="generate sample dumps if absent, ingest them, print a summary")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WarehouseMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
