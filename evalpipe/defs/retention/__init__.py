"""Scheduled archive and retention jobs, and the pruning of Dagster's own run history."""
