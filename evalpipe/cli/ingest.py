"""`evalpipe ingest` and `evalpipe demo`: writes, through the Dagster definitions and instance."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from evalpipe.core.config import Settings, load_settings
from evalpipe.core.output import FORMATS, render
from evalpipe.storage.warehouse import query

DEMO_SHAPE = {"runs": 5, "tasks": 16, "instances": 40, "seed": 7}

RUN_SUMMARY_SQL = """
SELECT r.run_id, r.model, r.revision, r.status, r.n_tasks, r.n_aggregates,
       string_agg(t.task_name || '=' || printf('%.4f', t.primary_score), ', ' ORDER BY t.task_name)
         AS aggregate_scores
FROM runs r LEFT JOIN task_results t ON t.run_id = r.run_id AND t.is_aggregate
GROUP BY ALL ORDER BY r.run_id
"""

FAILED_CHECKS_SQL = """
SELECT run_id, asset, "check", severity, blocking, description FROM run_checks
WHERE NOT passed AND list_contains(?, run_id) ORDER BY run_id, blocking DESC, asset, "check"
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest", help="ingest new or changed run directories (what the sensor does)"
    )
    p.add_argument("--dumps", type=Path, help="dumps root (default: $EVALPIPE_DUMPS)")
    p.add_argument(
        "--datasets", type=Path, help="VMEvalKit data roots (default: $EVALPIPE_DATASETS)"
    )
    p.add_argument("--lmeval", type=Path, help="lm-eval results root (default: $EVALPIPE_LMEVAL)")
    p.add_argument("--force", action="store_true", help="re-ingest even unchanged run directories")
    p.add_argument("--verbose", action="store_true", help="show Dagster's own event log")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table: the summary for people; markdown/csv: the per-run rows; json: one object "
        "with the counts, the runs, the failed checks and the failed run directories",
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("demo", help="generate sample dumps if absent, ingest them, print a summary")
    p.set_defaults(func=cmd_demo)


def cmd_ingest(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.dumps:
        env["EVALPIPE_DUMPS"] = str(args.dumps)
    if args.datasets:
        env["EVALPIPE_DATASETS"] = str(args.datasets)
    if args.lmeval:
        env["EVALPIPE_LMEVAL"] = str(args.lmeval)
    settings = load_settings(env)
    roots = (settings.dumps, settings.datasets, settings.lmeval)
    if not any(root.is_dir() for root in roots):
        print(
            f"error: dumps root {settings.dumps} does not exist (set EVALPIPE_DUMPS or pass "
            f"--dumps), nor does the VMEvalKit datasets root {settings.datasets} "
            f"(EVALPIPE_DATASETS, --datasets) or the lm-eval root {settings.lmeval} "
            "(EVALPIPE_LMEVAL, --lmeval)",
            file=sys.stderr,
        )
        return 2
    if args.format != "table":
        return ingest_and_emit(settings, args.format, force=args.force, verbose=args.verbose)
    return ingest_and_report(settings, force=args.force, verbose=args.verbose)


def ingest_and_emit(settings: Settings, fmt: str, *, force: bool, verbose: bool) -> int:
    """`ingest --format markdown|csv|json`: the same ingest, its answer in that format on
    stdout (progress and problems on stderr); non-zero on any failure, as the summary."""
    from evalpipe.definitions import build_definitions
    from evalpipe.defs.runner import get_instance, ingest

    print(f"ingesting run directories under {settings.dumps}", file=sys.stderr)
    report = ingest(
        build_definitions(settings),
        settings,
        get_instance(settings),
        force=force,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        log_level="DEBUG" if verbose else "CRITICAL",
    )
    runs = query(settings.warehouse, RUN_SUMMARY_SQL) if settings.warehouse.exists() else ([], [])
    ok_ids = [o.run_id for o in report.outcomes if o.ok]
    checks = (
        query(settings.warehouse, FAILED_CHECKS_SQL, [ok_ids])
        if ok_ids and settings.warehouse.exists()
        else (["run_id"], [])
    )
    blocking = "blocking" in checks[0] and any(r[checks[0].index("blocking")] for r in checks[1])
    if fmt == "json":
        answer = {
            "scanned": report.scanned,
            "ingested": len(report.outcomes) - len(report.failed),
            "unchanged": report.skipped_unchanged,
            "failed": len(report.failed),
            "dagster_runs": report.batches,
            "runs": json.loads(render(*runs, "json")) if runs[0] else [],
            "failed_checks": json.loads(render(*checks, "json")),
            "failed_runs": [{"run_id": o.run_id, "errors": o.errors} for o in report.failed],
        }
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        print(render(*runs, fmt))
        for outcome in report.failed:
            print(f"failed: {outcome.run_id}: {'; '.join(outcome.errors)}", file=sys.stderr)
    return 1 if report.failed or blocking else 0


def ingest_and_report(settings: Settings, *, force: bool, verbose: bool = False) -> int:
    """Ingest, print the per-run summary and every failed check; non-zero on any failure."""
    from evalpipe.definitions import build_definitions
    from evalpipe.defs.runner import get_instance, ingest

    print(f"ingesting run directories under {settings.dumps}")
    if settings.datasets.is_dir():
        print(f"ingesting VMEvalKit data roots under {settings.datasets}")
    if settings.lmeval.is_dir():
        print(f"ingesting lm-eval results under {settings.lmeval}")
    report = ingest(
        build_definitions(settings),
        settings,
        get_instance(settings),
        force=force,
        log_level="DEBUG" if verbose else "CRITICAL",
    )
    print(
        f"{report.scanned} run directories: {len(report.outcomes) - len(report.failed)} ingested, "
        f"{report.skipped_unchanged} unchanged, {len(report.failed)} failed "
        f"({report.batches} Dagster runs)"
    )
    if settings.warehouse.exists():
        print(render(*query(settings.warehouse, RUN_SUMMARY_SQL)))
    ok = [o for o in report.outcomes if o.ok]
    # A source may prefix its lake run ids with its name (vmeval: `vmeval:<dataset>`).
    status = _report_failed_checks(
        settings, [o.run_id for o in ok] + [f"{o.source}:{o.run_id}" for o in ok]
    )
    if report.failed:
        print("\nfailed run directories:", file=sys.stderr)
        for outcome in report.failed:
            print(f"  {outcome.run_id}", file=sys.stderr)
            for message in outcome.errors:
                print(f"    {message}", file=sys.stderr)
        status = 1
    return status


def _report_failed_checks(settings: Settings, run_ids: list[str]) -> int:
    """Print the failed checks of the runs just ingested; 1 if any of them blocks."""
    if not run_ids or not settings.warehouse.exists():
        return 0
    columns, rows = query(settings.warehouse, FAILED_CHECKS_SQL, [run_ids])
    if not rows:
        return 0
    blocking = [r for r in rows if r[columns.index("blocking")]]
    stream = sys.stderr if blocking else sys.stdout
    print(f"\n{len(rows)} failed checks ({len(blocking)} blocking):", file=stream)
    for run_id, asset, check, severity, is_blocking, description in rows:
        tag = f"{severity}, blocking" if is_blocking else severity
        print(f"  {run_id}: {asset}.{check} ({tag}): {description}", file=stream)
    if blocking:
        quarantined = sorted({r[0] for r in blocking})
        print(f"quarantined (kept out of leaderboards): {', '.join(quarantined)}", file=stream)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the bundled sample dumps if absent, ingest them, print the result."""
    from evalpipe.cli.snapshots import snapshot_and_report
    from evalpipe.sources.olmes.samples import generate_dumps
    from evalpipe.sources.vmeval.samples import generate_datasets

    settings = load_settings()
    if not settings.dumps.exists() or not any(settings.dumps.iterdir()):
        print(f"generating sample dumps in {settings.dumps} ({DEMO_SHAPE})")
        generate_dumps(settings.dumps, **DEMO_SHAPE)
    if not settings.datasets.exists() or not any(settings.datasets.iterdir()):
        print(f"generating sample VMEvalKit data roots in {settings.datasets}")
        generate_datasets(settings.datasets, datasets=2, questions=6, seed=7)
    settings = load_settings({**os.environ, "EVALPIPE_SETTLE_SECONDS": "0"})
    status = ingest_and_report(settings, force=False)
    print(f"\ntaking a local snapshot to {settings.snapshot_target} ...")
    status = max(status, snapshot_and_report(settings, None, note="make demo"))
    print(
        f"\nwarehouse: {settings.warehouse}\n"
        'query it:   evalpipe sql "SELECT * FROM task_results LIMIT 5"\n'
        "VMEvalKit:  evalpipe success-rates --by domain; evalpipe agreement\n"
        "snapshots:  evalpipe snapshots list\n"
        "see it:     make dev, then open http://127.0.0.1:3000 (asset graph, runs, partitions)"
    )
    return status
