"""Integrity checks over the core tables, as plain functions returning `CheckOutcome`s.

Source-agnostic: GX suites of the shared tables (`gx_suites`), reconciliation of aggregates and
counts (`reconcile`), and the checks across runs (`cross_run`). A source composes them into its
per-run checks (`evalpipe.sources.<name>.checks`); the Dagster layer reports them. Importing
this package does not import Great Expectations; the first GX validation does.
"""
