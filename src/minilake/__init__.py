"""minilake: landing zone -> archive -> validated SCD2 Delta tables, and reports on them.

The public API; the CLI (``python -m minilake``) and the notebooks call exactly these. The parts
a daily run does not need (``pull``, ``export``) are imported when first used.
"""

from minilake.generate import generate
from minilake.ingest import erasures, ingest, rebuild, run, status, versions
from minilake.landing import land_sample, reset, split
from minilake.tables import read_table

_LAZY = {"pull": "minilake.api_pull", "pulls": "minilake.api_pull", "export": "minilake.exports",
         "marts": "minilake.datamarts", "read_mart": "minilake.datamarts",
         "sql": "minilake.query"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'minilake' has no attribute {name!r}")


__all__ = ["erasures", "export", "generate", "ingest", "land_sample", "marts", "pull", "pulls",
           "read_mart", "read_table", "rebuild", "reset", "run", "split", "sql", "status",
           "versions"]
