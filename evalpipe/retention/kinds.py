"""What the archive job archives, per kind of the policy (`[archive.<kind>]`).

- `olmes`: each OLMES run directory under EVALPIPE_DUMPS;
- `vmeval_outputs` / `vmeval_evaluations`: each folder directly in a VMEvalKit data root's
  `outputs/` or `evaluations/` under EVALPIPE_DATASETS (`questions/` never).

Each unit comes with the scan whose ingestion covers it (the run itself, or the whole data
root of a VMEvalKit folder): a local copy is deleted only once that scan's current state is
ingested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalpipe.core.config import Settings
from evalpipe.core.inventory import RunScan
from evalpipe.core.retention_policy import ARCHIVE_KINDS, ArchivePolicy
from evalpipe.sources.base import Source
from evalpipe.sources.vmeval import layout
from evalpipe.sources.vmeval.parts import part_scans
from evalpipe.sources.vmeval.source import lake_run_id

VMEVAL_AREAS = {"vmeval_outputs": layout.OUTPUTS, "vmeval_evaluations": layout.EVALUATIONS}


@dataclass(frozen=True)
class Unit:
    kind: str
    scan: RunScan
    covering: RunScan
    lake_run_id: str


def roots(settings: Settings) -> dict[str, Path]:
    """Where each kind's units live (and interrupted deletions are looked for)."""
    return {"olmes": settings.dumps, **dict.fromkeys(VMEVAL_AREAS, settings.datasets)}


def units(settings: Settings, policy: ArchivePolicy, sources: Sequence[Source]) -> list[Unit]:
    """Every unit of every enabled kind (age not judged here)."""
    found: list[Unit] = []
    covering: dict[str, RunScan] = {}
    by_name = {s.name: s for s in sources}
    for kind in ARCHIVE_KINDS:
        if not policy.kind(kind).enabled:
            continue
        root = roots(settings)[kind]
        if not root.is_dir():
            continue
        if kind == "olmes" and "olmes" in by_name:
            found += [Unit(kind, s, s, s.run_id) for s in by_name["olmes"].scan(root).runs]
        elif kind in VMEVAL_AREAS:
            for scan in part_scans(root, VMEVAL_AREAS[kind]):
                data_root = scan.inventory.run_dir.parent.parent
                dataset = layout.dataset_key(root, data_root)
                if dataset not in covering:  # one inventory per data root, not per folder
                    covering[dataset] = RunScan(scan.source, dataset, layout.inventory(data_root))
                found.append(Unit(kind, scan, covering[dataset], lake_run_id(dataset)))
    return found


def is_vmeval(kind: str) -> bool:
    return kind in VMEVAL_AREAS
