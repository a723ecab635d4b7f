"""`evalpipe snapshot` and `evalpipe snapshots list|verify|restore|diff`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from evalpipe.config import Settings, load_settings
from evalpipe.output import render
from evalpipe.snapshots import (
    ProgressEvent,
    SnapshotError,
    diff_snapshots,
    list_snapshots,
    restore_snapshot,
    verify_snapshot,
)

FORMATS = ["table", "markdown", "csv", "json"]


def _print_progress(event: ProgressEvent) -> None:
    print(f"  {event}", file=sys.stderr, flush=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("snapshot", help="snapshot dumps, lake and reconstructed artifacts")
    p.add_argument("--target", help="file:///path or s3://bucket/prefix (default: configured)")
    p.add_argument("--note", default="", help="change note stored in the manifest")
    p.add_argument("--dry-run", action="store_true", help="hash and report, store nothing")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("snapshots", help="list, verify, restore and compare snapshots")
    p.add_argument("--target", help="file:///path or s3://bucket/prefix (default: configured)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="every snapshot, newest last")
    a.add_argument("--format", choices=FORMATS, default="table")
    a.set_defaults(func=cmd_list)
    a = actions.add_parser("verify", help="re-hash every stored file of a snapshot")
    a.add_argument("snapshot_id", nargs="?", help="default: latest")
    a.set_defaults(func=cmd_verify)
    a = actions.add_parser("restore", help="restore a snapshot into an empty directory")
    a.add_argument("snapshot_id")
    a.add_argument("--to", type=Path, required=True, dest="dest")
    a.set_defaults(func=cmd_restore)
    a = actions.add_parser("diff", help="files added, removed and changed between two snapshots")
    a.add_argument("a")
    a.add_argument("b")
    a.add_argument("--format", choices=FORMATS, default="table")
    a.set_defaults(func=cmd_diff)


def _target_and_client(args: argparse.Namespace) -> tuple[str, object]:
    from dagster_aws.s3 import S3Resource

    from evalpipe.defs.snapshots.assets import s3_client_for

    target = args.target or load_settings().snapshot_target
    return target, s3_client_for(target, S3Resource())


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def cmd_snapshot(args: argparse.Namespace) -> int:
    target, client = _target_and_client(args)
    return snapshot_and_report(
        load_settings(), target, client, note=args.note, dry_run=args.dry_run
    )


def snapshot_and_report(
    settings: Settings,
    target: str,
    client: object,
    *,
    note: str,
    dry_run: bool = False,
    progress: Callable[[ProgressEvent], None] | None = _print_progress,
) -> int:
    """Take a snapshot, record it in the instance (so the UI shows it) and print a summary."""
    import dagster as dg

    from evalpipe.defs.runner import get_instance
    from evalpipe.defs.snapshots.assets import SNAPSHOT_ASSET, run_snapshot, snapshot_metadata

    try:
        result = run_snapshot(
            settings, target=target, client=client, note=note, dry_run=dry_run, progress=progress
        )
    except (SnapshotError, BotoCoreError, ClientError, OSError) as exc:
        return _fail(exc)
    if not dry_run:
        get_instance(settings).report_runless_asset_event(
            dg.AssetMaterialization(asset_key=SNAPSHOT_ASSET, metadata=snapshot_metadata(result))
        )
    verb = "would upload" if dry_run else "uploaded"
    print(
        f"snapshot {result.snapshot_id} at {result.uri}: {result.files} files, "
        f"{result.bytes_total / 1e6:.1f} MB; {verb} {result.files_uploaded} files "
        f"({result.bytes_uploaded / 1e6:.1f} MB), reused {result.bytes_reused / 1e6:.1f} MB, "
        f"in {result.duration_s:.1f}s"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    target, client = _target_and_client(args)
    try:
        entries = list_snapshots(target, client=client)
    except (SnapshotError, BotoCoreError, ClientError, OSError) as exc:
        return _fail(exc)
    columns = ["version", "date", "files", "size_mb", "files_uploaded", "note", "latest"]
    print(render(columns, [[e.get(c) for c in columns] for e in entries], args.format))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    target, client = _target_and_client(args)
    try:
        report = verify_snapshot(target, args.snapshot_id, client=client, progress=_print_progress)
    except (SnapshotError, BotoCoreError, ClientError, OSError) as exc:
        return _fail(exc)
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1


def cmd_restore(args: argparse.Namespace) -> int:
    target, client = _target_and_client(args)
    try:
        result = restore_snapshot(
            target, args.snapshot_id, args.dest, client=client, progress=_print_progress
        )
    except (SnapshotError, BotoCoreError, ClientError, OSError) as exc:
        return _fail(exc)
    print(
        f"restored snapshot {result.snapshot_id} to {result.dest}: {result.files} files, "
        f"{result.bytes / 1e6:.1f} MB (rebuild the warehouse with EVALPIPE_HOME pointed there "
        "and `evalpipe ingest`)"
    )
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    target, client = _target_and_client(args)
    try:
        diff = diff_snapshots(target, args.a, args.b, client=client)
    except (SnapshotError, BotoCoreError, ClientError, OSError) as exc:
        return _fail(exc)
    rows = [["added", p] for p in diff.added] + [["removed", p] for p in diff.removed]
    rows += [["changed", p] for p in diff.changed]
    print(render(["change", "path"], rows, args.format))
    if args.format in ("table", "markdown"):
        print(f"{diff.unchanged_count} files unchanged")
    return 0
