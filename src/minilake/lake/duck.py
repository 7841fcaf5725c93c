"""The in-process DuckDB (docs/architecture.md), opened one way wherever it is used: installing
and loading nothing (no network, ever), its memory capped, spilling to a temporary folder that
is removed afterwards.

DuckDB reads Arrow tables where they lie (``register``): the marts are computed with it, ``sql``
answers queries with it. (The SCD2 diff does not use it: on a 100x day, DuckDB joining the row
texts and the keys made the day slower than Arrow and pandas do, benchmarks/README.md.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

# DuckDB's own memory for joins and sorts, beyond which it spills to a temporary folder: its
# default (80 % of RAM) let the 1000x marts in full reach 5.85 GB on top of the Arrow tables
# they read (65.7 s); capped at 2 GB they peaked at 4.7 GB (68.5 s), at 1 GB at 3.8 GB
# (76.9 s), inside customer_monthly's query; made a slice of customers at a time, 3.5 GB at
# 2 GB (53.9 s), 3.3 GB at 1.5 GB (55.1 s). A daily 100x refresh does not spill.
MEMORY = os.environ.get("MINILAKE_DUCKDB_MEMORY", "2GB")
NOTHING_LOADED = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def connect(**config):
    """An in-memory DuckDB that installs and loads nothing (and ``config``)."""
    import duckdb  # on first use: start-up stays light

    return duckdb.connect(config={**NOTHING_LOADED, **config})


@contextlib.contextmanager
def connected(memory: str = MEMORY) -> Iterator:
    """:func:`connect`, capped at ``memory`` and spilling to a temporary folder removed
    afterwards (made by DuckDB only if it spills, so a killed run that did not spill leaves
    nothing behind)."""
    spill = Path(tempfile.gettempdir()) / f"minilake-duckdb-{os.getpid()}-{uuid.uuid4().hex}"
    con = connect(memory_limit=memory, temp_directory=str(spill))
    try:
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
