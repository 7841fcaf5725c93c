"""minilake: landing zone -> archive -> validated SCD2 Delta tables, and reports on them.

The public API: what the notebooks, the Airflow DAG and a Python user call, and what the
command line and the job server are thin layers over (docs/architecture.md). Each name is
imported when first used, so that a command loads only what it needs (a run with nothing to
do loads neither pandas nor the generator). Importing the package changes nothing else.
"""

# light, and bound first: ``minilake.generate`` is the function, not its subpackage
from minilake.generate import generate

_LAZY = {"init": "minilake.lake.layout", "land_sample": "minilake.inbound.landing",
         "reset": "minilake.inbound.landing", "split": "minilake.inbound.landing",
         **dict.fromkeys(["erasures", "ingest", "maintain", "rebuild", "refresh_marts",
                          "replay_rejects", "run", "schema_changes", "status", "vacuum",
                          "versions"],
                         "minilake.pipeline"),
         "read_table": "minilake.load.history",
         "pull": "minilake.inbound.pull", "pulls": "minilake.inbound.pull",
         "export": "minilake.outbound.exports", "marts": "minilake.outbound.marts",
         "read_mart": "minilake.outbound.marts", "sql": "minilake.outbound.query",
         "task_parent": "minilake.outbound.lineage"}
_MODULES = {"reports": "minilake.outbound.reports"}    # ``from minilake import reports``


def __getattr__(name: str) -> object:
    import importlib  # on first use: start-up stays light

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'minilake' has no attribute {name!r}")
    globals()[name] = value         # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


__all__ = ["erasures", "export", "generate", "ingest", "init", "land_sample", "maintain", "marts",
           "pull", "pulls", "read_mart", "read_table", "rebuild", "refresh_marts",
           "replay_rejects", "reports", "reset", "run", "schema_changes", "split", "sql",
           "status", "task_parent", "vacuum", "versions"]
