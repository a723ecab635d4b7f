"""OLMES dumps in Dagster: everything comes from the source interface (`defs/sources.py`)."""

from evalpipe.defs.sources import build_source_defs
from evalpipe.sources.olmes.source import OLMES

OLMES_DEFS = build_source_defs(OLMES)
