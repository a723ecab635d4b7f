"""The one place a source is registered: add its `defs/<name>/definitions.py` here.

Everything across sources (leaderboards, warehouse, snapshot, the CLI's ingest) iterates this,
so their lineage and their work cover every registered source.
"""

from evalpipe.defs.lmeval.definitions import LMEVAL_DEFS
from evalpipe.defs.olmes.definitions import OLMES_DEFS
from evalpipe.defs.sources import SourceDefs

SOURCE_DEFS: tuple[SourceDefs, ...] = (OLMES_DEFS, LMEVAL_DEFS)


def per_run_keys(names: list[str] | None = None) -> list:
    """Asset keys of every source's per-run assets (only those named `names`, if given)."""
    return [key for defs in SOURCE_DEFS for key in defs.asset_keys(names)]
