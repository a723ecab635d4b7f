"""Weights & Biases as a sink: the optional `wandb_runs` asset (see `evalpipe.sinks.wandb_runs`).

It runs with the downstream refresh like the leaderboards, and does nothing but say so in its
metadata unless `EVALPIPE_WANDB_PROJECT` is set, so `make demo` never touches W&B. Where the
runs go (online, `WANDB_MODE=offline`, `WANDB_DIR`, `WANDB_BASE_URL`) and the API key
(`WANDB_API_KEY` or `wandb login`) are the `wandb` client's own settings, read by it alone.
"""

import dagster as dg
import pandas as pd

from evalpipe.defs.metadata import markdown_preview
from evalpipe.defs.registry import per_run_keys
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.warehouse.conditions import REFRESH_ON_ANY_UPDATE
from evalpipe.sinks.wandb_runs import sync

GROUP = "sinks"
SKIPPED = (
    "skipped: EVALPIPE_WANDB_PROJECT is not set. Set it (and EVALPIPE_WANDB_ENTITY for a team, "
    "WANDB_API_KEY or `wandb login` for the key) to log every healthy run to Weights & Biases."
)


@dg.asset(
    group_name=GROUP,
    kinds={"wandb"},
    deps=per_run_keys(["runs", "task_results", "task_metrics", "run_status"]),
    automation_condition=REFRESH_ON_ANY_UPDATE,
    description="Every healthy run of every source as one W&B run (id derived from the run id, "
    "grouped by checkpoint, lm-eval's config, summary, eval_results table and results "
    "artifact); runs quarantined after logging are marked. Skipped unless "
    "EVALPIPE_WANDB_PROJECT is set.",
)
def wandb_runs(context: dg.AssetExecutionContext, evalpipe: EvalpipeHome) -> dg.MaterializeResult:
    settings = evalpipe.settings()
    if not settings.wandb_project:
        context.log.info(SKIPPED)
        return dg.MaterializeResult(metadata={"status": "skipped", "reason": SKIPPED})
    report = sync(
        evalpipe.lake,
        settings.home,
        settings.wandb_project,
        settings.wandb_entity,
        progress=context.log.info,
    )
    not_logged = pd.DataFrame(sorted(report.not_logged.items()), columns=["run_id", "status"])
    return dg.MaterializeResult(
        metadata={
            "status": "synced",
            "project": settings.wandb_project,
            "entity": settings.wandb_entity or "(the API key's default)",
            "runs_logged": len(report.logged),
            "runs_marked_quarantined": len(report.marked),
            "runs_unchanged": report.unchanged,
            "runs_not_logged": markdown_preview(not_logged, max_rows=20),
        }
    )
