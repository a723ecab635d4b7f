"""What a source is: scan a root into runs, ingest one run, say what it wrote and checked.

The core (lake, warehouse, run status, leaderboards, snapshots) and the Dagster wiring
(`evalpipe.defs.sources`) work on this interface only, so a new kind of evaluation output is
added as `sources/<name>/` implementing it plus `defs/<name>/` registering it, without
touching either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evalpipe.core.config import Settings
from evalpipe.core.inventory import RootScan, RunInventory, RunScan
from evalpipe.core.jsonl import DumpFormatError
from evalpipe.results.status import RunCheck
from evalpipe.storage.lake import Lake

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TableAsset:
    """One thing a run produces, shown as one asset (`<source>/<name>`) in the UI."""

    name: str
    description: str
    kinds: frozenset[str] = frozenset({"parquet"})


@dataclass(frozen=True)
class CheckSpec:
    """One per-run check: the asset it is about, its name, whether its failure quarantines."""

    asset: str
    name: str
    blocking: bool
    description: str


@dataclass
class RunResult:
    """What ingesting one run wrote and found, in plain values for the Dagster layer."""

    run_id: str
    fingerprint: str
    """Of the files as they were read (they may have changed since the scan)."""
    status: str
    status_reason: str | None
    checks: list[RunCheck]
    metadata: dict[str, dict[str, Any]]
    """Asset name → metadata (numbers, strings, `pandas.DataFrame` previews, `Path`s)."""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Source(Protocol):
    """A kind of evaluation output evalpipe ingests."""

    name: str
    """`runs.source`, the asset key prefix and the partition set's name prefix."""
    assets: Sequence[TableAsset]
    checks: Sequence[CheckSpec]
    # Optional: `partition_unit` names what one partition is (default "runs"; the partition
    # set is `<name>_<unit>`, e.g. `vmeval_datasets`).

    def root(self, settings: Settings) -> Path:
        """The directory this source watches."""
        ...

    def scan(self, root: Path) -> RootScan:
        """Every run under `root` with its inventory (stats only: no file content is read), and
        what was skipped there and why."""
        ...

    def inventory(self, root: Path, run_id: str) -> RunInventory:
        """One run's current inventory, by id (raises `DumpFormatError` if it is gone)."""
        ...

    def ingest(
        self, scans: Iterable[RunScan], settings: Settings, progress: Progress
    ) -> Iterator[tuple[str, RunResult | Exception]]:
        """Ingest runs one after another, yielding each run's id with what it wrote and found,
        or the exception that failed it (bad input: a `DumpFormatError` naming file and line).
        Each run's tables and status are committed together or not at all; one failed run
        does not stop the others. Taking many runs at once lets a source share fixed costs
        (a GX validation) across them."""
        ...


def refuse_lost_files(lake: Lake, run_id: str, inventory: RunInventory) -> None:
    """Files that vanished since the run's published version are an error, not an update:
    re-ingesting without them would silently drop stored rows (deleting on purpose is the
    retention and archive jobs' work). Every source calls this before it stages a run."""
    record = lake.record(run_id)
    if record is None or "run_files" not in record["tables"]:
        return
    before = lake.read("run_files", run_id).column("name").to_pylist()
    lost = sorted(set(before) - {f.name for f in inventory.files})
    if lost:
        shown = ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
        raise DumpFormatError(
            inventory.run_dir,
            None,
            f"{len(lost)} files disappeared since the last ingest ({shown}); the published "
            "version is kept",
        )
