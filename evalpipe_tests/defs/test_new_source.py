"""A new source needs only the `Source` interface: the generic Dagster wiring gives it
partitions, a batched ingest step, per-run checks and a sensor, and its rows land in the shared
tables beside OLMES's, told apart by `runs.source`. (A real source lives in `sources/<name>/`
and `defs/<name>/` and is registered in `defs/registry.py`; this one is defined inline.)"""

from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pyarrow as pa

from evalpipe.core.config import Settings
from evalpipe.core.inventory import RootScan, RunInventory, RunScan, stat_files
from evalpipe.core.jsonl import DumpFormatError
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.sources import build_source_defs, range_tags
from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.results.status import RunCheck, run_status
from evalpipe.sources.base import CheckSpec, Progress, RunResult, TableAsset
from evalpipe.storage.lake import Lake
from evalpipe.storage.schemas import SCHEMAS


class ScoresSource:
    """Toy format: `<root>/<run>/scores.tsv`, one `task<TAB>score` line per task."""

    name = "toy"
    assets = (
        TableAsset("raw_run_inventory", "The run's files."),
        TableAsset("task_results", "One row per task."),
    )
    checks = (CheckSpec("task_results", "scores_in_range", True, "Every score is in [0, 1]."),)

    def root(self, settings: Settings) -> Path:
        return settings.home / "toy"

    def scan(self, root: Path) -> RootScan:
        runs = [RunScan(self.name, d.name, self.inventory(root, d.name)) for d in root.iterdir()]
        return RootScan(runs, skipped=[])

    def inventory(self, root: Path, run_id: str) -> RunInventory:
        files, problems = stat_files(root / run_id, root)
        return RunInventory(root / run_id, files, problems=problems)

    def ingest(
        self, scans: Iterable[RunScan], settings: Settings, progress: Progress
    ) -> Iterator[tuple[str, RunResult | Exception]]:
        lake = Lake(settings.lake)
        for scan in scans:
            path = scan.inventory.run_dir / "scores.tsv"
            try:
                rows = [self._row(scan.run_id, path, n, line) for n, line in self._lines(path)]
            except DumpFormatError as exc:
                yield scan.run_id, exc
                continue
            bad = [r["task_name"] for r in rows if not 0 <= r["primary_score"] <= 1]
            check = CheckOutcome("scores_in_range", not bad, "ERROR", f"out of range: {bad}")
            checks = [RunCheck("task_results", check)]
            status, reason = run_status(checks)
            with lake.stage(scan.run_id, ["runs", "task_results"]) as staged:
                staged.write("task_results", pa.Table.from_pylist(rows, SCHEMAS["task_results"]))
                run = {"run_id": scan.run_id, "source": self.name, "n_tasks": len(rows)}
                staged.write("runs", pa.Table.from_pylist([run], SCHEMAS["runs"]))
                staged.commit()
            metadata = {"task_results": {"dagster/row_count": len(rows)}}
            yield (
                scan.run_id,
                RunResult(
                    scan.run_id, scan.inventory.fingerprint, status, reason, checks, metadata
                ),
            )

    @staticmethod
    def _lines(path: Path) -> Iterator[tuple[int, str]]:
        return enumerate(path.read_text().splitlines(), 1)

    @staticmethod
    def _row(run_id: str, path: Path, number: int, line: str) -> dict:
        task, _, score = line.partition("\t")
        try:
            value = float(score)
        except ValueError:
            raise DumpFormatError(path, number, f"score {score!r} is not a number") from None
        at = datetime(2025, 1, 1, tzinfo=timezone.utc)
        return {"run_id": run_id, "task_name": task, "primary_score": value, "evaluated_at": at}


def test_a_source_defined_only_by_the_interface_ingests_checks_and_fails_alone(
    settings: Settings,
) -> None:
    root = settings.home / "toy"
    for run, text in {"a": "x\t0.5\ny\t0.25\n", "b": "x\t7\n", "c": "x\tnan?\n"}.items():
        (root / run).mkdir(parents=True)
        (root / run / "scores.tsv").write_text(text)
    toy = build_source_defs(ScoresSource())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(toy.partitions.name, ["a", "b", "c"])
        result = dg.materialize(
            [toy.assets],
            instance=instance,
            tags=range_tags("a", "c", 3),
            resources={"evalpipe": EvalpipeHome.from_settings(settings)},
            raise_on_error=False,
        )
        assert not result.success, "run c has bad input"
        key = dg.AssetKey(["toy", "task_results"])
        assert instance.get_materialized_partitions(key) == {"a", "b"}
        status = instance.get_latest_materialization_event(dg.AssetKey(["toy", "run_status"]))
        assert status.asset_materialization.partition == "b"
        assert status.asset_materialization.metadata["status"].value == "quarantined"
    runs = Lake(settings.lake).read_all("runs").to_pylist()
    assert {(r["run_id"], r["source"]) for r in runs} == {("a", "toy"), ("b", "toy")}
    assert toy.sensor.name == "toy_sensor" and toy.job.name == "toy_ingest"
