"""`python -m evalpipe.samples`: write deterministic sample data of any source.

One entry point for every source's generator (`--format`), so tests, benchmarks and `make demo`
build their fixtures the same way a user does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from evalpipe.sources.olmes.samples import generate_dumps, run_dir_bytes
from evalpipe.sources.vmeval.samples import generate_datasets

FORMATS = ("olmes", "vmeval")


def main(argv: Sequence[str] | None = None) -> int:
    """Generate sample data, then print the run directories and what was written."""
    parser = argparse.ArgumentParser(
        prog="python -m evalpipe.samples",
        description="Write deterministic sample evaluation output.",
    )
    parser.add_argument("--format", choices=FORMATS, default="olmes", help="which source")
    parser.add_argument("--out", type=Path, required=True, help="root to write into")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="olmes: other seeds write dumps named <dump>-seed<N>, so their run ids never collide",
    )
    vmeval = parser.add_argument_group("vmeval (VMEvalKit data roots)")
    vmeval.add_argument("--datasets", type=int, default=2, help="clean data roots to write")
    vmeval.add_argument("--questions", type=int, default=4, help="questions per domain")
    vmeval.add_argument(
        "--hostile", action="store_true", help="also write `hostile/`: each error code once"
    )
    args = parser.parse_args(argv)
    if args.format == "vmeval":
        return _vmeval(parser, args)
    try:
        suffix = f"-seed{args.seed}" if args.seed else ""
        run_dirs = generate_dumps(
            args.out, args.runs, args.tasks, args.instances, args.seed, dump_suffix=suffix
        )
    except ValueError as exc:
        parser.error(str(exc))
    files = sum(1 for d in run_dirs for p in d.iterdir() if p.is_file())
    size = sum(run_dir_bytes(d) for d in run_dirs)
    for d in run_dirs:
        print(d.relative_to(args.out).as_posix())
    print(f"wrote {len(run_dirs)} run directories, {files} files, {size} bytes under {args.out}")
    return 0


def _vmeval(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        roots = generate_datasets(
            args.out, args.datasets, args.questions, args.seed, hostile=args.hostile
        )
    except ValueError as exc:
        parser.error(str(exc))
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    for root in roots:
        print(root.relative_to(args.out).as_posix())
    print(f"wrote {len(roots)} data roots, {len(files)} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
