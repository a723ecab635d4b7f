"""Retention and archiving: what to keep, what to archive, what may go, and doing it safely."""
