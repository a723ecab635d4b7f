"""Which Dagster runs the policy deletes: old, beyond the newest few per job, and never one that
recorded anything about an asset.

Dagster's `delete_run` removes a run together with its events, asset materializations and
check evaluations included; the UI's partition status and lineage come from those. So a run
with any asset event (materialization, observation, check evaluation, their planned and failed
forms) is never deleted, which keeps in particular the latest run that materialized each
partition. What goes are the rest: failed or empty ingest attempts, sensor and schedule runs
that did no asset work, old retention and archive runs. Runs still in progress are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from evalpipe.core.retention_policy import DagsterPolicy
from evalpipe.retention.plan import Action

ASSET_EVENTS = {
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    dg.DagsterEventType.ASSET_FAILED_TO_MATERIALIZE,
    dg.DagsterEventType.ASSET_OBSERVATION,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
}
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
DAY = 86400.0


@dataclass(frozen=True)
class RunPlan:
    delete: list[Action]
    kept: list[str]


def plan_run_deletions(instance: dg.DagsterInstance, policy: DagsterPolicy, now: float) -> RunPlan:
    """Finished runs older than the policy's age, past the newest `keep_last_per_job` of their
    job, that touched no asset."""
    cutoff = now - policy.runs_older_than_days * DAY
    seen_per_job: dict[str, int] = {}
    delete: list[Action] = []
    kept_recent = kept_asset = 0
    for record in instance.get_run_records(dg.RunsFilter(statuses=FINISHED), ascending=False):
        run = record.dagster_run
        job = run.job_name
        seen_per_job[job] = seen_per_job.get(job, 0) + 1
        if (
            seen_per_job[job] <= policy.keep_last_per_job
            or record.create_timestamp.timestamp() > cutoff
        ):
            kept_recent += 1
            continue
        if _touched_assets(instance, run.run_id):
            kept_asset += 1
            continue
        age = (now - record.create_timestamp.timestamp()) / DAY
        delete.append(
            Action(
                "delete_dagster_run",
                run.run_id,
                f"{job} run, {run.status.value.lower()}, {age:.0f} days old, no asset events",
            )
        )
    kept = [
        f"{kept_recent} Dagster runs: recent or among the last {policy.keep_last_per_job} of "
        "their job",
        f"{kept_asset} older Dagster runs: they recorded asset materializations or checks",
    ]
    return RunPlan(delete, kept)


def delete_runs(instance: dg.DagsterInstance, actions: Sequence[Action]) -> list[Action]:
    """Delete the planned runs, re-checking each for asset events first."""
    done = []
    for action in actions:
        if instance.has_run(action.target) and not _touched_assets(instance, action.target):
            instance.delete_run(action.target)
            done.append(action)
    return done


def _touched_assets(instance: dg.DagsterInstance, run_id: str) -> bool:
    return bool(instance.get_records_for_run(run_id, of_type=ASSET_EVENTS, limit=1).records)
