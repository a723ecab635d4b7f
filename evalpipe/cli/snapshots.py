"""`evalpipe snapshot` and `evalpipe snapshots list|verify|restore|diff`.

Every command runs through `_guarded`, so any failure prints one `error:` line whose URLs have
their credentials redacted (botocore quotes AWS_ENDPOINT_URL verbatim, user:password included).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from evalpipe.cli.progress import StderrProgress
from evalpipe.core.config import Settings, load_settings
from evalpipe.core.output import render
from evalpipe.snapshots.manifests import (
    SnapshotError,
    VerifyReport,
    diff_snapshots,
    list_snapshots,
    restore_snapshot,
    verify_snapshot,
)
from evalpipe.snapshots.store import redact_credentials

FORMATS = ["table", "markdown", "csv", "json"]
_EXPECTED_ERRORS = (SnapshotError, BotoCoreError, ClientError, OSError, ValueError)

Command = Callable[[argparse.Namespace], int]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("snapshot", help="snapshot dumps, lake and reconstructed artifacts")
    p.add_argument("--target", help="file:///path or s3://bucket/prefix (default: configured)")
    p.add_argument("--note", default="", help="change note stored in the manifest")
    p.add_argument("--dry-run", action="store_true", help="hash and report, store nothing")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=_guarded(cmd_snapshot))

    p = sub.add_parser("snapshots", help="list, verify, restore and compare snapshots")
    p.add_argument("--target", help="file:///path or s3://bucket/prefix (default: configured)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="every snapshot, newest last")
    a.add_argument("--format", choices=FORMATS, default="table")
    a.set_defaults(func=_guarded(cmd_list))
    a = actions.add_parser("verify", help="re-hash every stored file of a snapshot")
    a.add_argument("snapshot_id", nargs="?", help="default: latest")
    a.add_argument("--format", choices=FORMATS, default="table")
    a.set_defaults(func=_guarded(cmd_verify))
    a = actions.add_parser("restore", help="restore a snapshot into an empty directory")
    a.add_argument("snapshot_id")
    a.add_argument("--to", type=Path, required=True, dest="dest")
    a.add_argument("--format", choices=FORMATS, default="table")
    a.set_defaults(func=_guarded(cmd_restore))
    a = actions.add_parser("diff", help="files added, removed and changed between two snapshots")
    a.add_argument("a")
    a.add_argument("b")
    a.add_argument("--format", choices=FORMATS, default="table")
    a.set_defaults(func=_guarded(cmd_diff))
    for action, pinned in (("pin", True), ("unpin", False)):
        verb = "keep" if pinned else "stop keeping"
        a = actions.add_parser(action, help=f"{verb} a snapshot whatever the retention policy")
        a.add_argument("snapshot_id")
        a.set_defaults(func=_guarded(cmd_pin), pinned=pinned)


def _target_and_client(args: argparse.Namespace) -> tuple[str, object]:
    from dagster_aws.s3 import S3Resource

    from evalpipe.defs.snapshots.assets import s3_client_for

    target = args.target or load_settings().snapshot_target
    return target, s3_client_for(target, S3Resource())


def _fail(exc: Exception, status: int = 1) -> int:
    print(f"error: {redact_credentials(str(exc))}", file=sys.stderr)
    return status


def _guarded(command: Command) -> Command:
    """`command`, printing an expected failure as one redacted line instead of a traceback;
    invalid values (ValueError) keep exit status 2, as elsewhere in the CLI."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except _EXPECTED_ERRORS as exc:
            return _fail(exc, 2 if isinstance(exc, ValueError) else 1)

    return run


def _print_skipped(skipped: list[str] | tuple[str, ...]) -> None:
    """Entries a snapshot left out unread (symlinks leaving their source, special files)."""
    for line in skipped:
        print(f"warning: skipped {redact_credentials(line)}", file=sys.stderr)


def cmd_snapshot(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.dry_run:
        target, client = _target_and_client(args)
        return dry_run_and_report(settings, target, client, note=args.note, fmt=args.format)
    return snapshot_and_report(settings, args.target, note=args.note, fmt=args.format)


def _emit(fields: dict, fmt: str) -> None:
    """A one-record answer in a machine format (`--format markdown|csv|json`)."""
    from evalpipe.cli.query import _emit_record

    _emit_record(list(fields), tuple(fields.values()), fmt)


def dry_run_and_report(
    settings: Settings, target: str, client: object, *, note: str, fmt: str = "table"
) -> int:
    """Hash everything and say what a snapshot would upload; store nothing, record nothing."""
    from evalpipe.defs.snapshots.assets import run_snapshot

    result = run_snapshot(
        settings, target=target, client=client, note=note, dry_run=True, progress=None
    )
    _print_skipped(result.skipped)
    if fmt != "table":
        _emit(
            {
                "target": redact_credentials(target),
                "files": result.files,
                "bytes_total": result.bytes_total,
                "files_to_upload": result.files_uploaded,
                "bytes_to_upload": result.bytes_uploaded,
                "bytes_reused": result.bytes_reused,
                "stored": False,
            },
            fmt,
        )
        return 0
    print(
        f"dry run against {redact_credentials(target)}: {result.files} files, "
        f"{result.bytes_total / 1e6:.1f} MB; would upload {result.files_uploaded} files "
        f"({result.bytes_uploaded / 1e6:.1f} MB), reuse {result.bytes_reused / 1e6:.1f} MB; "
        "nothing was stored and no manifest written"
    )
    return 0


def snapshot_and_report(
    settings: Settings, target: str | None, *, note: str, fmt: str = "table"
) -> int:
    """Materialize the `snapshot` asset (the same job the daily schedule runs, on the same
    instance, so the UI shows it) and print a summary."""
    from evalpipe.definitions import build_definitions
    from evalpipe.defs.runner import get_instance, quiet_run_config, step_errors
    from evalpipe.defs.snapshots.assets import SNAPSHOT_ASSET, SNAPSHOT_JOB

    config = {"note": note, **({"target": target} if target else {})}
    run_config = {**quiet_run_config("CRITICAL"), "ops": {SNAPSHOT_ASSET: {"config": config}}}
    job = build_definitions(settings).resolve_job_def(SNAPSHOT_JOB)
    result = job.execute_in_process(
        run_config=run_config, instance=get_instance(settings), raise_on_error=False
    )
    if not result.success:
        return _fail(RuntimeError("; ".join(step_errors(result)) or "the snapshot run failed"))
    materialization = result.asset_materializations_for_node(SNAPSHOT_ASSET)[0]
    meta = {k: v.value for k, v in materialization.metadata.items()}
    _print_skipped(meta["skipped"])
    if fmt != "table":
        fields = ["snapshot_id", "uri", "files", "bytes_total", "files_uploaded"]
        fields += ["bytes_uploaded", "bytes_reused", "duration_s"]
        _emit({**{k: meta[k] for k in fields}, "dagster_run_id": result.run_id}, fmt)
        return 0
    print(
        f"snapshot {meta['snapshot_id']} at {meta['uri']}: {meta['files']} files, "
        f"{meta['bytes_total'] / 1e6:.1f} MB; uploaded {meta['files_uploaded']} files "
        f"({meta['bytes_uploaded'] / 1e6:.1f} MB), reused {meta['bytes_reused'] / 1e6:.1f} MB, "
        f"in {meta['duration_s']:.1f}s (Dagster run {result.run_id[:8]})"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    target, client = _target_and_client(args)
    entries = list_snapshots(target, client=client)
    columns = ["version", "date", "files", "size_mb", "files_uploaded", "note", "latest", "expired"]
    # `expired` (by the retention policy): still logged, its manifest gone
    print(render(columns, [[e.get(c, False) for c in columns] for e in entries], args.format))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    target, client = _target_and_client(args)
    with StderrProgress() as progress:
        report = verify_snapshot(target, args.snapshot_id, client=client, progress=progress)
    rows = _verify_problems(report)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    elif args.format == "csv":
        print(render(["problem", "path"], rows, "csv"))
    else:
        print(_verify_summary(report))
        if rows:
            print(render(["problem", "path"], rows, args.format))
    return 0 if report.ok else 1


def _verify_summary(report: VerifyReport) -> str:
    """One line: what was re-hashed and whether the snapshot is intact."""
    counts = [
        (len(report.missing), "missing"),
        (len(report.corrupted), "corrupted"),
        (len(report.invalid), "invalid manifest entries"),
    ]
    problems = [f"{n} {what}" for n, what in counts if n]
    if not report.manifest_ok:
        problems.insert(0, "manifest corrupted")
    return (
        f"snapshot {report.snapshot_id}: {report.checked} files re-hashed "
        f"({report.bytes_checked / 1e6:.1f} MB); {', '.join(problems) or 'ok'}"
    )


def _verify_problems(report: VerifyReport) -> list[list[str]]:
    """One row per problem found: (kind, manifest path or entry)."""
    rows = [] if report.manifest_ok else [["manifest corrupted", report.snapshot_id]]
    rows += [["missing", path] for path in report.missing]
    rows += [["corrupted", path] for path in report.corrupted]
    return rows + [["invalid", entry] for entry in report.invalid]


def cmd_restore(args: argparse.Namespace) -> int:
    target, client = _target_and_client(args)
    with StderrProgress() as progress:
        result = restore_snapshot(
            target, args.snapshot_id, args.dest, client=client, progress=progress
        )
    if args.format != "table":
        fields = {"snapshot_id": result.snapshot_id, "dest": str(result.dest)}
        _emit({**fields, "files": result.files, "bytes": result.bytes}, args.format)
        return 0
    print(
        f"restored snapshot {result.snapshot_id} to {result.dest}: {result.files} files, "
        f"{result.bytes / 1e6:.1f} MB (rebuild the warehouse with EVALPIPE_HOME pointed there "
        "and `evalpipe ingest`)"
    )
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    target, client = _target_and_client(args)
    diff = diff_snapshots(target, args.a, args.b, client=client)
    rows = [["added", p] for p in diff.added] + [["removed", p] for p in diff.removed]
    rows += [["changed", p] for p in diff.changed]
    print(render(["change", "path"], rows, args.format))
    if args.format in ("table", "markdown"):
        print(f"{diff.unchanged_count} files unchanged")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    """Record the pin at the target (pins.json), beside the snapshots it protects."""
    from evalpipe.retention.snapshots import set_pinned
    from evalpipe.snapshots.store import open_store

    target, client = _target_and_client(args)
    pins = set_pinned(open_store(target, client), args.snapshot_id, args.pinned)
    state = "pinned" if args.pinned else "unpinned"
    print(f"{state} snapshot {args.snapshot_id}; pinned now: {', '.join(sorted(pins)) or 'none'}")
    return 0
