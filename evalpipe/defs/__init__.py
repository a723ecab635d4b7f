"""Dagster wiring, one folder per area; `evalpipe.definitions` assembles them."""
