"""`evalpipe wandb-sync`: log to Weights & Biases now, through the `wandb_runs` asset.

`evalpipe ingest` logs as part of its refresh only when something was ingested; this logs what
is already in the lake (after setting EVALPIPE_WANDB_PROJECT, say), recorded on the Dagster
instance like every other materialization.
"""

from __future__ import annotations

import argparse
import sys

from evalpipe.core.config import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "wandb-sync",
        help="log every healthy run not yet logged to W&B (needs EVALPIPE_WANDB_PROJECT)",
    )
    p.set_defaults(func=cmd_wandb_sync)


def cmd_wandb_sync(args: argparse.Namespace) -> int:
    import dagster as dg

    from evalpipe.defs.resources import EvalpipeHome
    from evalpipe.defs.runner import get_instance, quiet_run_config, step_errors
    from evalpipe.defs.wandb.assets import SKIPPED, wandb_runs

    settings = load_settings()
    if not settings.wandb_project:
        print(f"error: {SKIPPED.removeprefix('skipped: ')}", file=sys.stderr)
        return 2
    result = dg.materialize(
        [wandb_runs],
        instance=get_instance(settings),
        resources={"evalpipe": EvalpipeHome.from_settings(settings)},
        run_config=quiet_run_config("CRITICAL"),
        raise_on_error=False,
    )
    if not result.success:
        print("error: " + "; ".join(step_errors(result)), file=sys.stderr)
        return 1
    [done] = result.asset_materializations_for_node("wandb_runs")
    values = {key: value.value for key, value in done.metadata.items()}
    print(
        f"W&B project {values['project']}: {values['runs_logged']} runs logged, "
        f"{values['runs_marked_quarantined']} marked quarantined, "
        f"{values['runs_unchanged']} unchanged since they were logged"
    )
    return 0
