"""VMEvalKit data roots in Dagster: the per-data-root ingest comes from the source interface
(`defs/sources.py`, partitions `vmeval_datasets`); success rates and evaluator agreement are
derived across the healthy data roots and refreshed whenever one changes."""

import dagster as dg

from evalpipe.defs.metadata import markdown_preview, table_metadata
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.sources import asset_key, build_source_defs
from evalpipe.defs.warehouse.conditions import REFRESH_ON_ANY_UPDATE
from evalpipe.sources.vmeval.rates import (
    evaluator_agreement,
    healthy_evaluations,
    success_rates,
)
from evalpipe.sources.vmeval.report import success_rates_section
from evalpipe.sources.vmeval.source import VMEVAL
from evalpipe.storage.lake import Lake
from evalpipe.storage.warehouse import read_runs_with_status

DERIVED = {
    "vm_success_rates": "Per (evaluator, model, domain) and per (evaluator, model) over all "
    "domains (`(all)`), healthy data roots only: n_scored, n_skipped, successes, "
    "success_rate = successes / n_scored with its 95% Wilson interval, and upstream_rate (what "
    "the upstream plots print: skipped counted as failures).",
    "vm_evaluator_agreement": "Each pair of evaluators on the questions both scored: n, "
    "percent agreement and Cohen's kappa on success (score >= 4), Spearman's rho on scores.",
}


@dg.multi_asset(
    group_name="leaderboards",
    specs=[
        dg.AssetSpec(
            name,
            deps=[asset_key(VMEVAL.name, "vm_evaluations"), asset_key(VMEVAL.name, "run_status")],
            kinds={"parquet"},
            description=description,
            automation_condition=REFRESH_ON_ANY_UPDATE,
        )
        for name, description in DERIVED.items()
    ],
)
def vm_results(evalpipe: EvalpipeHome):
    lake = evalpipe.lake
    evaluations = healthy_evaluations(
        read_runs_with_status(lake), lake.read_all("vm_evaluations").to_pandas()
    )
    for name, table in (
        ("vm_success_rates", success_rates(evaluations)),
        ("vm_evaluator_agreement", evaluator_agreement(evaluations)),
    ):
        lake.write_derived(name, table)
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={
                **table_metadata(table, lake.derived_file(name)),
                "datasets_counted": int(evaluations["dataset"].nunique()),
                "top_rows": markdown_preview(table.to_pandas(), max_rows=20),
            },
        )


def report_section(lake: Lake) -> str:
    """The success-rates section of the report page, once the rates exist."""
    if "vm_success_rates" not in lake.derived_tables():
        return ""
    return success_rates_section(lake.read_derived("vm_success_rates").to_pandas())


VMEVAL_DEFS = build_source_defs(
    VMEVAL, downstream=dg.Definitions(assets=[vm_results]), report_section=report_section
)
DERIVED_KEYS = [dg.AssetKey(name) for name in DERIVED]
