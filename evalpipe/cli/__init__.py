"""`evalpipe`: the everyday questions and the writes, as thin commands over the library.

Commands that write go through the Dagster definitions and instance (so the UI shows what the
CLI did); commands that read open the warehouse read-only. One module per area registers its
subcommands.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
from collections.abc import Sequence

import duckdb

from evalpipe.cli import checks, ingest, query, retention, sinks, snapshots, vmeval
from evalpipe.core.config import ScannerUnavailable
from evalpipe.storage.warehouse import WarehouseMissing

AREAS = (ingest, checks, query, snapshots, retention, vmeval, sinks)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalpipe", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version",
        action=VersionAction,
        help="the version and which instance-line scanner (C or pure Python) this install uses",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for area in AREAS:
        area.register(sub)
    return parser


class VersionAction(argparse.Action):
    """`--version`, resolved only when asked (finding the scanner imports pyarrow)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from importlib.metadata import version

        from evalpipe.sources.olmes.scanner import scanner_implementation

        scanner = scanner_implementation()
        print(f"evalpipe {version('evalpipe')} (instance scanner: {scanner})")
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (WarehouseMissing, ScannerUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (duckdb.Error, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The `evalpipe` command: `main`, then a quick exit.

    Tearing down Dagster's and Great Expectations' module graphs at interpreter exit takes about
    a second and does nothing for the user: every file evalpipe writes is closed and made
    durable before its command returns. So the exit handlers run (logging is flushed, helper
    threads stop) and the process ends without the teardown. A reader that goes away
    (`evalpipe runs | head`) ends the command quietly, with status 1."""
    try:
        code = main()
    except BrokenPipeError:
        code = 1
    finally:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):
                stream.flush()
    os._exit(code)
