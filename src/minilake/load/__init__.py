"""The load stage: archived files to SCD2 tables (validation, the SCD2 diff, the tables' files
and commits, per source in order or replayed, the Dask engine, history)."""


class EngineError(RuntimeError):
    """The Dask cluster could not do a file's work (the file was not applied; README.md, the
    Dask engine)."""
