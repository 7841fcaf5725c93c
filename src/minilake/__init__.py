"""minilake: landing zone -> archive -> validated SCD2 Delta tables, and reports on them.

The public API; the CLI (``python -m minilake``) and the notebooks call exactly these. The parts
a daily run does not need (``pull``, ``export``) are imported when first used.
"""

from minilake.generate import generate
from minilake.inbound.landing import land_sample, reset, split
from minilake.load.ingest import erasures, ingest, rebuild, run, status, vacuum, versions
from minilake.load.tables import read_table

_LAZY = {"pull": "minilake.inbound.api_pull", "pulls": "minilake.inbound.api_pull",
         "export": "minilake.outbound.exports", "marts": "minilake.outbound.datamarts",
         "read_mart": "minilake.outbound.datamarts", "sql": "minilake.outbound.query"}
_MODULES = {"reports": "minilake.outbound.reports"}    # ``from minilake import reports``


def __getattr__(name: str) -> object:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    raise AttributeError(f"module 'minilake' has no attribute {name!r}")


__all__ = ["erasures", "export", "generate", "ingest", "land_sample", "marts", "pull", "pulls",
           "read_mart", "read_table", "rebuild", "reports", "reset", "run", "split", "sql",
           "status", "vacuum", "versions"]
