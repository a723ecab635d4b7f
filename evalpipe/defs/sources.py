"""The Dagster wiring every source gets from the `Source` interface alone.

For a source named `s`: a dynamic partition set `s_runs` (one partition per run), one
multi-asset `s_run` that ingests a batch of partitions in one step (a single-run backfill
policy, so a backfill of hundreds of runs pays Dagster's per-run overhead once), its per-run
checks, a job `s_ingest` and a sensor `s_sensor` that requests contiguous ranges of new or
changed runs. Every asset key is prefixed with the source's name and the per-run assets share
the group `s_ingest`, so the UI says which source an asset belongs to.

One bad run fails alone: the step records each good run's materializations and check results
for its own partition, and fails at the end naming every bad run with its `file:line: problem`.
"""

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from evalpipe.core.inventory import RunScan
from evalpipe.defs.checks import check_evaluation
from evalpipe.defs.ingest_state import FAILED, Attempt, pending_scans, record_attempt
from evalpipe.defs.metadata import to_metadata
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.sources.base import CheckSpec, RunResult, Source
from evalpipe.storage.lake import Lake

RUN_STATUS = "run_status"
FILE_PROGRESS = logging.getLogger("evalpipe.ingest")
"""Per-file progress inside a run goes to Python logging, not the Dagster event log: each Dagster
log line is a stored event (milliseconds each on SQLite), and a run has hundreds of files."""
BATCH_TAG = "evalpipe/batch"
SENSOR_INTERVAL_SECONDS = 5
"""How often the sensor scans the root: a settled run starts ingesting within this; a scan of
10,000 unchanged run directories is measured in benchmarks/sensor_tick.py."""
MAX_BATCH = 1000
"""Runs per Dagster run at most: a batch's progress stays readable and a failure re-runs less."""


def asset_key(source: str, name: str) -> dg.AssetKey:
    return dg.AssetKey([source, name])


def ingest_group(source: str) -> str:
    return f"{source}_ingest"


def partitions_name(source: str, unit: str = "runs") -> str:
    return f"{source}_{unit}"


def contiguous_ranges(
    order: Sequence[str], wanted: set[str], limit: int = MAX_BATCH
) -> list[tuple[str, str, int]]:
    """Maximal runs of consecutive keys of `order` that are all `wanted`, at most `limit` long,
    as `(first, last, count)`: each is one partition range, so one Dagster run."""
    ranges: list[tuple[str, str, int]] = []
    start: int | None = None
    for i, key in enumerate([*order, None]):
        inside = key is not None and key in wanted
        if inside and start is not None and i - start == limit:
            ranges.append((order[start], order[i - 1], i - start))
            start = i
        elif inside and start is None:
            start = i
        elif not inside and start is not None:
            ranges.append((order[start], order[i - 1], i - start))
            start = None
    return ranges


def range_tags(first: str, last: str, count: int) -> dict[str, str]:
    return {
        ASSET_PARTITION_RANGE_START_TAG: first,
        ASSET_PARTITION_RANGE_END_TAG: last,
        BATCH_TAG: str(count),
    }


def failure_description(failures: Sequence[tuple[str, str]], total: int) -> str:
    lines = [f"{len(failures)} of {total} runs failed (the others were ingested):"]
    lines += [f"{run_id}: {message}" for run_id, message in failures]
    return "\n".join(lines)


@dataclass(frozen=True)
class SourceDefs:
    """What one source contributes to the definitions."""

    source: Source
    partitions: dg.DynamicPartitionsDefinition
    assets: dg.AssetsDefinition
    job: UnresolvedAssetJobDefinition
    sensor: dg.SensorDefinition
    downstream: dg.Definitions | None = None
    """What the source derives across its runs (VMEvalKit success rates), if anything."""
    report_section: Callable[[Lake], str] | None = None
    """The source's section of the report page (HTML; "" for none yet), if it has one."""

    def definitions(self) -> dg.Definitions:
        own = dg.Definitions(assets=[self.assets], jobs=[self.job], sensors=[self.sensor])
        return dg.Definitions.merge(own, self.downstream) if self.downstream else own

    def downstream_keys(self) -> list[dg.AssetKey]:
        if self.downstream is None:
            return []
        return [key for a in self.downstream.assets or [] for key in a.keys]

    def asset_keys(self, names: Sequence[str] | None = None) -> list[dg.AssetKey]:
        """Keys of this source's per-run assets (those of `names` it has, if given)."""
        have = [a.name for a in self.source.assets] + [RUN_STATUS]
        return [asset_key(self.source.name, n) for n in have if names is None or n in names]


def build_source_defs(
    source: Source,
    downstream: dg.Definitions | None = None,
    report_section: Callable[[Lake], str] | None = None,
) -> SourceDefs:
    unit = getattr(source, "partition_unit", "runs")
    partitions = dg.DynamicPartitionsDefinition(name=partitions_name(source.name, unit))
    group = ingest_group(source.name)
    inventory, *tables = source.assets
    specs = [
        dg.AssetSpec(
            asset_key(source.name, inventory.name),
            description=inventory.description,
            kinds=set(inventory.kinds),
            skippable=True,
        ),
        *(
            dg.AssetSpec(
                asset_key(source.name, a.name),
                description=a.description,
                kinds=set(a.kinds),
                deps=[asset_key(source.name, inventory.name)],
                skippable=True,
            )
            for a in tables
        ),
        dg.AssetSpec(
            asset_key(source.name, RUN_STATUS),
            description="Each run's status from its checks: `ok`, or `quarantined` with the "
            "reason when a blocking check failed. Only ok runs reach anything aggregated "
            "across runs (leaderboards, the report page, snapshot stats).",
            kinds={"parquet"},
            deps=[asset_key(source.name, a.name) for a in source.assets],
            skippable=True,
        ),
    ]
    with warnings.catch_warnings():
        # Partitioned checks are a Dagster preview; they are what gives each run its own check
        # status, and the warning would otherwise greet every command a user runs.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        check_specs = [_check_spec(source, check, partitions) for check in source.checks]

    @dg.multi_asset(
        name=f"{source.name}_run",
        specs=specs,
        check_specs=check_specs,
        partitions_def=partitions,
        group_name=group,
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"Ingest a batch of {source.name} runs: every table of each run, checked "
        "and committed together; a run that fails leaves its previous version in place.",
    )
    def ingest_runs(context: dg.AssetExecutionContext, evalpipe: EvalpipeHome):
        settings = evalpipe.settings()
        root = source.root(settings)
        keys = list(context.partition_keys)
        failures: list[tuple[str, str]] = []
        scans: list[RunScan] = []
        for run_id in keys:
            try:
                scans.append(RunScan(source.name, run_id, source.inventory(root, run_id)))
            except Exception as exc:  # a run directory that vanished fails alone
                failures.append((run_id, _fail(context, source, run_id, "", exc)))
        fingerprints = {s.run_id: s.inventory.fingerprint for s in scans}
        for done, (run_id, outcome) in enumerate(
            source.ingest(scans, settings, progress=FILE_PROGRESS.debug), len(failures) + 1
        ):
            if isinstance(outcome, Exception):
                message = _fail(context, source, run_id, fingerprints[run_id], outcome)
                failures.append((run_id, message))
                context.log.error(f"[{done}/{len(keys)}] {run_id}: FAILED {message}")
                continue
            _report(context, source, outcome)
            context.log.info(
                f"[{done}/{len(keys)}] {run_id}: {outcome.status} in {outcome.seconds:.1f}s"
            )
            attempt = Attempt(
                outcome.fingerprint, outcome.status, None, outcome.seconds, time.time()
            )
            record_attempt(context.instance, source.name, run_id, attempt)
        # Every event was logged per partition above; the step itself yields no output (a
        # generator, so Dagster does not expect one value per asset).
        yield from ()
        if failures:
            raise dg.Failure(
                description=failure_description(failures, len(keys)),
                metadata={"failed_runs": dg.MetadataValue.json(dict(failures))},
            )

    job = dg.define_asset_job(
        f"{source.name}_ingest",
        selection=dg.AssetSelection.groups(group),
        description=f"Ingest {source.name} runs (a partition range is one batch): each run's "
        "tables, checks and status, committed together.",
    )

    @dg.sensor(
        name=f"{source.name}_sensor",
        job=job,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Watches the {source.name} root; ingests a run once it is complete and no "
        "file has changed for EVALPIPE_SETTLE_SECONDS, and again whenever its files change. "
        "Pending runs go in batches (one Dagster run per contiguous range of partitions).",
    )
    def sensor(context: dg.SensorEvaluationContext, evalpipe: EvalpipeHome) -> dg.SensorResult:
        settings = evalpipe.settings()
        root = source.root(settings)
        if not root.is_dir():
            return dg.SkipReason(f"{source.name} root {root} does not exist")
        now = time.time()
        found = source.scan(root)
        scans = found.runs
        for skipped in found.skipped:
            context.log.warning(skipped)
        settled = [s for s in scans if s.inventory.settled(now, settings.settle_seconds)]
        pending = pending_scans(context.instance, settled, retry_failed=False)
        cursor = json.dumps({"runs": len(scans), "settling": len(scans) - len(settled)})
        if not pending:
            return dg.SensorResult(skip_reason=_waiting(scans, settled, now), cursor=cursor)
        known = context.instance.get_dynamic_partitions(partitions.name)
        known_ids = set(known)
        new_keys = [s.run_id for s in pending if s.run_id not in known_ids]
        order = [*known, *new_keys]
        requests = [
            dg.RunRequest(
                run_key=_batch_key(s.ingest_key for s in pending if s.run_id in batch),
                tags=range_tags(first, last, count),
            )
            for first, last, count in contiguous_ranges(order, {s.run_id for s in pending})
            for batch in [set(order[order.index(first) : order.index(last) + 1])]
        ]
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[partitions.build_add_request(new_keys)]
            if new_keys
            else [],
            cursor=cursor,
        )

    return SourceDefs(source, partitions, ingest_runs, job, sensor, downstream, report_section)


def _fail(
    context: dg.AssetExecutionContext,
    source: Source,
    run_id: str,
    fingerprint: str,
    exc: Exception,
) -> str:
    """Record a failed run (so the sensor does not retry it until its files change) and return
    the message a person reads: `file:line: problem` for bad input, the error otherwise."""
    message = str(exc) if isinstance(exc, ValueError | OSError) else repr(exc)
    attempt = Attempt(fingerprint, FAILED, message, 0.0, time.time())
    record_attempt(context.instance, source.name, run_id, attempt)
    return message


def _check_spec(
    source: Source, check: CheckSpec, partitions: dg.DynamicPartitionsDefinition
) -> dg.AssetCheckSpec:
    severity = "ERROR, quarantines the run: " if check.blocking else "WARN: "
    return dg.AssetCheckSpec(
        check.name,
        asset=asset_key(source.name, check.asset),
        blocking=check.blocking,
        partitions_def=partitions,
        description=severity + check.description,
    )


def _batch_key(ingest_keys: Iterable[str]) -> str:
    """One key per batch of run states: the sensor never launches the same batch twice."""
    return hashlib.sha256("\n".join(sorted(ingest_keys)).encode()).hexdigest()[:32]


def _waiting(scans: Sequence[RunScan], settled: Sequence[RunScan], now: float) -> str:
    """Why a tick requested nothing, in words a person watching the sensor wants."""
    settled_ids = {s.run_id for s in settled}  # a set: roots hold thousands of runs
    settling = [s for s in scans if s.inventory.complete and s.run_id not in settled_ids]
    if settling:
        newest = max(s.inventory.newest_mtime for s in settling)
        return (
            f"{len(settling)} run directories settling, newest change {now - newest:.0f}s ago; "
            f"{len(scans) - len(settling)} others unchanged since their last ingest"
        )
    return f"{len(scans)} run directories, all unchanged since their last ingest"


def _report(context: dg.AssetExecutionContext, source: Source, result: RunResult) -> None:
    """One run's materializations and check results, each on that run's partition."""
    for warning in result.warnings:
        context.log.warning(warning)
    for name, values in result.metadata.items():
        context.log_event(
            dg.AssetMaterialization(
                asset_key=asset_key(source.name, name),
                partition=result.run_id,
                metadata=to_metadata(values),
            )
        )
    failed = [c.outcome.check for c in result.checks if not c.outcome.passed]
    context.log_event(
        dg.AssetMaterialization(
            asset_key=asset_key(source.name, RUN_STATUS),
            partition=result.run_id,
            metadata=to_metadata(
                {
                    "status": result.status,
                    "reason": result.status_reason or "",
                    "failed_checks": ", ".join(failed),
                }
            ),
        )
    )
    for check in result.checks:
        outcome = check.outcome
        if not outcome.passed:
            level = context.log.warning if outcome.blocking else context.log.info
            level(f"{result.run_id}: {outcome.check} failed: {outcome.description}")
        key = asset_key(source.name, check.asset)
        context.log_event(check_evaluation(key, outcome, result.run_id))
