"""minilake: landing zone -> archive -> validated SCD2 Delta tables, and reports on them.

The public API; the CLI (``python -m minilake``) and the notebooks call exactly these.
"""

from minilake.generate import generate
from minilake.ingest import ingest, rebuild, run, status, versions
from minilake.landing import land_sample, reset, split
from minilake.tables import read_table

__all__ = ["generate", "ingest", "land_sample", "read_table", "rebuild", "reset", "run", "split",
           "status", "versions"]
