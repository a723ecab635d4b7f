"""Dagster wiring of the OLMES source."""
