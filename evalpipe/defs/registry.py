"""The one place a source is registered: add its `defs/<name>/definitions.py` here.

Everything across sources (leaderboards, warehouse, snapshot, the CLI's ingest) iterates this,
so their lineage and their work cover every registered source.
"""

from evalpipe.defs.lmeval.definitions import LMEVAL_DEFS
from evalpipe.defs.olmes.definitions import OLMES_DEFS
from evalpipe.defs.sources import SourceDefs
from evalpipe.defs.vmeval.definitions import VMEVAL_DEFS

SOURCE_DEFS: tuple[SourceDefs, ...] = (OLMES_DEFS, VMEVAL_DEFS, LMEVAL_DEFS)


def per_run_keys(names: list[str] | None = None) -> list:
    """Asset keys of every source's per-run assets (only those named `names`, if given)."""
    return [key for defs in SOURCE_DEFS for key in defs.asset_keys(names)]


def downstream_keys() -> list:
    """Asset keys of what sources derive across their runs (the warehouse lists them too)."""
    return [key for defs in SOURCE_DEFS for key in defs.downstream_keys()]


def report_sections(lake) -> list[str]:
    """Each source's section of the report page, in registration order (empty ones left out)."""
    sections = [d.report_section(lake) for d in SOURCE_DEFS if d.report_section]
    return [s for s in sections if s]
