"""The archive job's VMEvalKit units: output experiments and evaluation folders, never questions.

Each folder directly in a data root's `outputs/` (an experiment, or a model in the flat layout)
or `evaluations/` (an evaluator folder, or an experiment) is one unit, scanned like a run
directory: its files relative to the folder, with sizes and mtimes. Its id is
`<dataset>/<area>/<name>`. `questions/` is never a unit: questions are kept forever.
"""

from __future__ import annotations

import os
from pathlib import Path

from evalpipe.core.inventory import RunScan
from evalpipe.sources.vmeval.layout import dataset_key, find_data_roots, list_files
from evalpipe.sources.vmeval.source import SOURCE_NAME


def part_scans(root: Path, area: str) -> list[RunScan]:
    """Every folder directly in `<data root>/<area>` of every data root below `root`."""
    scans = []
    for data_root in find_data_roots(root)[0]:
        dataset = dataset_key(root, data_root)
        try:
            with os.scandir(data_root / area) as entries:
                names = sorted(
                    e.name
                    for e in entries
                    if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
                )
        except OSError:
            continue
        for name in names:
            part = data_root / area / name
            scans.append(RunScan(SOURCE_NAME, f"{dataset}/{area}/{name}", list_files(part)))
    return scans
