"""Read-only questions on the warehouse: `evalpipe sql` (and the leaderboard commands)."""

from __future__ import annotations

import argparse

from evalpipe.config import load_settings
from evalpipe.output import render
from evalpipe.warehouse import query


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sql", help="run a read-only SQL query on the warehouse")
    p.add_argument("query")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_sql)


def cmd_sql(args: argparse.Namespace) -> int:
    columns, rows = query(load_settings().warehouse, args.query)
    print(render(columns, rows, args.format))
    return 0
