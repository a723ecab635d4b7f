"""`evalpipe validate`, `evalpipe success-rates`, `evalpipe agreement`: VMEvalKit data roots."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evalpipe.core.config import load_settings
from evalpipe.core.output import FORMATS, render
from evalpipe.storage.warehouse import query

ISSUE_COLUMNS = ["dataset", "path", "code", "severity", "message"]
RATES_SQL = """
SELECT evaluator, model, domain, n_scored, n_skipped, successes, success_rate, ci_low, ci_high,
       upstream_rate
FROM vm_success_rates
WHERE (? IS NULL OR evaluator = ?) AND ((? = 'model') = (domain = '(all)'))
ORDER BY evaluator, model, domain
"""
AGREEMENT_SQL = "SELECT * FROM vm_evaluator_agreement ORDER BY evaluator_a, evaluator_b"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate", help="validate one VMEvalKit data root without ingesting it (exit 1 on errors)"
    )
    p.add_argument("path", type=Path, help="a data root: the directory holding questions/")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "success-rates", help="VMEvalKit success rates (scored only) with 95%% Wilson intervals"
    )
    p.add_argument("--evaluator", help="only this evaluator (its folder, e.g. gpt4o-eval)")
    p.add_argument("--by", choices=["model", "domain"], default="model")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=cmd_success_rates)

    p = sub.add_parser("agreement", help="agreement between VMEvalKit evaluators")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=cmd_agreement)


def cmd_validate(args: argparse.Namespace) -> int:
    from evalpipe.sources.vmeval.reader import read_data_root

    root: Path = args.path
    if not root.is_dir():
        print(f"error: {root} is not a directory", file=sys.stderr)
        return 2
    data = read_data_root(root, _dataset_name(root))
    issues = data.log.issues
    if args.format == "json":
        print(json.dumps([i.as_dict() for i in issues], ensure_ascii=False, indent=2))
    else:
        rows = [[getattr(i, c) for c in ISSUE_COLUMNS] for i in issues]
        print(render(ISSUE_COLUMNS, rows, args.format))
        print(
            f"{root}: {len(data.questions)} questions, {len(data.outputs)} outputs, "
            f"{len(data.evaluations)} evaluations; {len(data.log.errors)} errors, "
            f"{len(data.log.warnings)} warnings",
            file=sys.stderr,
        )
    return 1 if data.log.errors else 0


def _dataset_name(root: Path) -> str:
    """The data root's key below EVALPIPE_DATASETS when it is there (as the tables name it),
    else its directory name."""
    resolved, datasets = root.resolve(), load_settings().datasets
    if resolved != datasets and resolved.is_relative_to(datasets):
        return resolved.relative_to(datasets).as_posix()
    return resolved.name


def cmd_success_rates(args: argparse.Namespace) -> int:
    settings = load_settings()
    columns, rows = query(settings.warehouse, RATES_SQL, [args.evaluator, args.evaluator, args.by])
    print(render(columns, rows, args.format))
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    columns, rows = query(load_settings().warehouse, AGREEMENT_SQL)
    print(render(columns, rows, args.format))
    return 0
