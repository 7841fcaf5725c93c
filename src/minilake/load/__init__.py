"""Archived files to tables: validation, SCD2 diff, Delta I/O, per-file runs, erasure."""


class EngineError(RuntimeError):
    """The Dask cluster could not do a file's work (the file was not applied; README.md, the Dask
engine)."""
