"""Archived files to tables: validation, SCD2 diff, Delta I/O, per-file runs, erasure."""
