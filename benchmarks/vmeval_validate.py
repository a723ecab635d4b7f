"""Benchmark: `evalpipe validate` on one large VMEvalKit data root, against a read-everything floor.

    .venv/bin/python benchmarks/vmeval_validate.py [--questions 2000] [--repeat 3]
        [--workdir DIR] [--keep]

Generates one data root with `--questions` questions per domain (5 domains: 10,000 by default)
with `python -m evalpipe.samples --format vmeval` (not timed): questions, both output layouts
and two evaluators. Then runs, each as a subprocess measured from outside (wall time, CPU,
peak RSS of the process tree; best of `--repeat`):

(a) `evalpipe validate ROOT --format json`, what a user runs (start-up included);
(b) the baseline: a Python process that only opens and `json.load`s every `.json` file of the
    data root and reads the first 8 bytes of every image, with no checks at all: the floor any
    validator that reads each file once must pay.

The target: 10,000 questions validate "in seconds" (< 10 s), as a ratio to the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _measure import TreeRun, run_tree

EVALPIPE = Path(sys.executable).parent / "evalpipe"
TARGET_SECONDS = 10.0
BASELINE = """
import json, os, sys
count = 0
for directory, _, names in os.walk(sys.argv[1]):
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith(".json"):
            with open(path, "rb") as handle:
                json.loads(handle.read().decode("utf-8"))
        elif name.endswith(".png"):
            with open(path, "rb") as handle:
                handle.read(8)
        count += 1
print(count)
"""


def best(command: list[str], workdir: Path, repeat: int, label: str) -> TreeRun:
    runs = []
    for i in range(repeat):
        runs.append(
            run_tree(
                command,
                env=os.environ,
                cwd=workdir,
                stdout=workdir / f"{label}-{i}.out",
                stderr=workdir / f"{label}-{i}.err",
                timeout=600,
            )
        )
        if runs[-1].returncode not in (0, 1):
            raise SystemExit(f"{label} failed: {(workdir / f'{label}-{i}.err').read_text()}")
    return min(runs, key=lambda r: r.seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=2000, help="questions per domain")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the generated data root")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vmeval-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "datasets"
    root = out / "lab0" / "v1"
    try:
        if not root.exists():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "evalpipe.samples",
                    "--format",
                    "vmeval",
                    "--out",
                    str(out),
                    "--datasets",
                    "1",
                    "--questions",
                    str(args.questions),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        files = sum(len(names) for _, _, names in os.walk(root))
        validate = best(
            [str(EVALPIPE), "validate", str(root), "--format", "json"],
            workdir,
            args.repeat,
            "validate",
        )
        issues = json.loads((workdir / "validate-0.out").read_text())
        errors = [i for i in issues if i["severity"] == "error"]
        baseline = best([sys.executable, "-c", BASELINE, str(root)], workdir, args.repeat, "floor")
        questions = 5 * args.questions
        print(f"data root: {questions} questions, {files} files ({workdir})")
        print(
            f"evalpipe validate: {validate.seconds:.2f} s ({validate.cpu_seconds:.2f} CPU-s), "
            f"{validate.peak_rss_mb:.0f} MB peak, {len(issues)} issues ({len(errors)} errors)"
        )
        print(
            f"read-everything floor: {baseline.seconds:.2f} s ({baseline.cpu_seconds:.2f} CPU-s), "
            f"{baseline.peak_rss_mb:.0f} MB peak"
        )
        ratio = validate.seconds / baseline.seconds
        met = "met" if validate.seconds < TARGET_SECONDS else "NOT met"
        print(f"ratio: {ratio:.2f}x the floor; target < {TARGET_SECONDS:.0f} s: {met}")
        return 0 if not errors else 1
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
