"""OLMES / oe-eval dumps: the first source (reader, tables, instance ingest, checks, samples).

Importing the package registers its own lake tables (`requests`, `recorded_inputs`).
"""

from evalpipe.sources.olmes import schemas as _schemas  # noqa: F401
