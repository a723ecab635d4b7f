"""lm-evaluation-harness results in Dagster: everything comes from the source interface."""

from evalpipe.defs.sources import build_source_defs
from evalpipe.sources.lmeval.source import LMEVAL

LMEVAL_DEFS = build_source_defs(LMEVAL)
