"""`evalpipe retention plan|apply` and `evalpipe archive list|restore`.

`plan` lists every action the policy (EVALPIPE_RETENTION_FILE) would take now and changes
nothing; `apply` runs the `archive` and `retention` jobs on the Dagster instance, so the UI
shows what the CLI did, after asking on a terminal (skip with --yes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evalpipe.cli.snapshots import FORMATS, _guarded
from evalpipe.core.config import Settings, load_settings
from evalpipe.core.output import render
from evalpipe.retention.plan import COLUMNS, Action, Scope, list_archives, restore_archive

ARCHIVE_COLUMNS = [
    "id",
    "source",
    "run_id",
    "files",
    "bytes",
    "archived_at",
    "local",
    "target",
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retention", help="plan or apply the retention and archive policy")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("plan", help="every action the policy would take now; changes nothing")
    a.add_argument("--format", choices=FORMATS, default="table")
    a.set_defaults(func=_guarded(cmd_plan))
    a = actions.add_parser("apply", help="archive, expire, sweep and prune as the policy says")
    a.add_argument("--yes", action="store_true", help="do not ask first")
    a.set_defaults(func=_guarded(cmd_apply))

    p = sub.add_parser("archive", help="list archived run directories or restore one")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="one entry per archived run directory, with its id")
    a.add_argument("--format", choices=FORMATS, default="table")
    a.set_defaults(func=_guarded(cmd_list))
    a = actions.add_parser("restore", help="bring an archived run directory back, byte-identical")
    a.add_argument("archive_id", metavar="ID")
    a.add_argument("--to", type=Path, dest="dest", help="default: where it was archived from")
    a.set_defaults(func=_guarded(cmd_restore))


def _scope(settings: Settings) -> Scope:
    from evalpipe.defs.resources import EvalpipeHome
    from evalpipe.defs.retention.jobs import build_scope
    from evalpipe.defs.runner import get_instance

    return build_scope(EvalpipeHome.from_settings(settings), get_instance(settings))


def full_plan(settings: Settings) -> tuple[list[Action], list[str]]:
    """Every action, in the order `apply` takes them, and what is kept and why."""
    from evalpipe.defs.retention.jobs import run_plan_actions
    from evalpipe.defs.runner import get_instance
    from evalpipe.retention.plan import plan_archive, plan_retention

    scope = _scope(settings)
    archived, archive_kept = plan_archive(scope)
    retained, kept = plan_retention(scope)
    runs, runs_kept = run_plan_actions(scope, get_instance(settings))
    return [*archived, *retained, *runs], [*archive_kept, *kept, *runs_kept]


def cmd_plan(args: argparse.Namespace) -> int:
    actions, kept = full_plan(load_settings())
    print(render(COLUMNS, [a.row() for a in actions], args.format))
    if args.format in ("table", "markdown"):
        freed = sum(a.bytes for a in actions if a.action != "archive")
        print(f"{len(actions)} actions, {freed / 1e6:.1f} MB freed; kept:")
        for line in kept:
            print(f"  {line}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from evalpipe.definitions import REFRESH_JOB, build_definitions
    from evalpipe.defs.retention.jobs import ARCHIVE_JOB, RETENTION_JOB
    from evalpipe.defs.runner import get_instance, quiet_run_config, step_errors

    settings = load_settings()
    actions, _ = full_plan(settings)
    if not actions:
        print("nothing to do: the policy is already applied")
        return 0
    print(render(COLUMNS, [a.row() for a in actions], "table"))
    if not args.yes and sys.stdin.isatty():
        answer = input(f"apply these {len(actions)} actions? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 1
    defs = build_definitions(settings)
    instance = get_instance(settings)
    status, archived = 0, 0
    for name in (ARCHIVE_JOB, RETENTION_JOB):
        result = defs.resolve_job_def(name).execute_in_process(
            run_config=quiet_run_config("CRITICAL"), instance=instance, raise_on_error=False
        )
        if not result.success:
            print(f"error: {name} job failed: {'; '.join(step_errors(result))}", file=sys.stderr)
            status = 1
            continue
        meta = _run_metadata(result)
        archived += meta.get("archive_count", 0) + meta.get("delete_local_count", 0)
        done = {k[: -len("_count")]: v for k, v in meta.items() if k.endswith("_count") and v}
        summary = ", ".join(f"{n} {action}" for action, n in done.items()) or "nothing"
        freed = meta["bytes_freed"] / 1e6
        print(f"{name} (Dagster run {result.run_id[:8]}): {summary}; {freed:.1f} MB freed")
        for refused in meta["refused"]:
            print(f"  kept: {refused}", file=sys.stderr)
    if archived:  # the warehouse's `archives` view up to date now, not at the next refresh
        refresh = defs.resolve_job_def(REFRESH_JOB).execute_in_process(
            run_config=quiet_run_config("CRITICAL"), instance=instance, raise_on_error=False
        )
        if not refresh.success:
            print(f"error: refreshing the warehouse failed: {'; '.join(step_errors(refresh))}")
            status = 1
    return status


def _run_metadata(result) -> dict:
    """What a job's one step reported: its asset's materialization or its op's output."""
    events = [e for e in result.all_node_events if e.is_step_materialization]
    if events:
        metadata = events[0].step_materialization_data.materialization.metadata
    else:
        (output,) = [e for e in result.all_node_events if e.is_successful_output]
        metadata = output.step_output_data.metadata
    return {k: v.value for k, v in metadata.items()}


def cmd_list(args: argparse.Namespace) -> int:
    rows = [
        [
            r["archive_id"],
            r["source"],
            r["run_id"],
            r["files"],
            r["bytes"],
            r["archived_at"].isoformat(timespec="seconds"),
            "deleted" if r["local_deleted_at"] else "present",
            r["manifest_uri"],
        ]
        for r in list_archives(_scope(load_settings()))
    ]
    print(render(ARCHIVE_COLUMNS, rows, args.format))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    where = restore_archive(_scope(load_settings()), args.archive_id, args.dest)
    print(f"restored archive {args.archive_id} to {where} (byte-identical, mtimes kept)")
    return 0
