"""Where things live under a root (docs/guarantees.md): any folder laid out like the repository, or
an S3 prefix laid out the same way (``s3://bucket/prefix``). Paths are local ``Path``s or
``UPath``s on S3; :mod:`minilake.lake.storage` does what the two do differently."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from minilake.lake import storage

if TYPE_CHECKING:
    from upath import UPath


@dataclass(frozen=True)
class Layout:
    root: Path | UPath

    @classmethod
    def of(cls, root: str | Path | UPath, create: bool = False) -> Layout:
        """The layout of ``root``, which must be a root minilake made (it holds one of
        :data:`MARKS`: ``init``, ``generate`` or the repository made it), else a one-line
        :class:`StorageError` and nothing is created; unless ``create``. An unknown scheme
        is one line too."""
        path = storage.locate(root, create=create)
        # before anything is moved: the run would stop at a table
        if storage.is_local(path) and "%" in str(path):
            raise ValueError(f"{path}: a root whose path holds '%' cannot hold the Delta "
                             f"tables (delta-rs reads '%20' in a path as an escape); "
                             f"use a folder without '%'")
        if not create and not is_root(path):
            shown = path if storage.is_local(path) else storage.uri(path)
            raise storage.StorageError(
                f"{shown} is not a minilake root (it holds none of "
                f"{', '.join(MARKS)}); `minilake init --root {shown}` makes it one, or give "
                f"the folder that holds landing_zone/")
        return cls(path)

    @property
    def landing(self) -> Path | UPath:
        return self.root / "landing_zone"

    def archive(self, source: str) -> Path | UPath:
        return self.root / "archive" / source

    def quarantine(self, source: str) -> Path | UPath:
        return self.root / "quarantine" / source

    def table(self, name: str) -> Path | UPath:
        return self.root / "tables" / name

    def mart(self, name: str) -> Path | UPath:
        """A mart, or a table the marts are kept from (``MARTS``, ``KEPT``)."""
        return self.root / "tables" / "marts" / name

    @property
    def marts_mark(self) -> Path | UPath:
        """The ingest log's moment the marts reflect (``outbound.marts``)."""
        return self.mart("_refreshed.json")

    def scratch(self, what: str) -> Path | UPath:
        """A scratch folder under ``tables/`` (``SCRATCH``): a rebuild's table, an erasure's
        staged files, a pull's pages; removed when its work is done (or by the next run)."""
        if what not in SCRATCH:
            raise ValueError(f"no scratch folder {what!r}: {', '.join(SCRATCH)}")
        return self.root / "tables" / f".{what}"

    @property
    def exports(self) -> Path | UPath:
        return self.root / "exports"

    def tables_written(self) -> list[Path | UPath]:
        """Every table minilake writes under the root (the sources', the logs, the marts and
        what they are kept from), whether it exists yet or not."""
        return ([self.table(name) for name in SOURCE_TABLES]
                + [self.ingest_log, self.pull_log, self.erasure_log, self.schema_log,
                   self.rejects]
                + [self.mart(name) for name in (*MARTS, *KEPT)])

    @property
    def ingest_log(self) -> Path | UPath:
        return self.table("_ingest_log")

    @property
    def erasure_log(self) -> Path | UPath:
        return self.table("_erasure_log")

    @property
    def schema_log(self) -> Path | UPath:
        return self.table("_schema_log")

    @property
    def pull_log(self) -> Path | UPath:
        return self.table("_pull_log")

    @property
    def rejects(self) -> Path | UPath:
        """Every error report's rows as a table (docs/quality.md)."""
        return self.table("_rejects")

    def error_report(self, source: str, stamp: str) -> Path | UPath:
        return self.root / "error_reports" / f"errors_{source}_{stamp}.csv"

    @property
    def reports(self) -> Path | UPath:
        return self.root / "reports"

    @property
    def final_results(self) -> Path | UPath:
        return self.root / "final_results"


# The tables under tables/: each source's, the marts (tables/marts/) and what the marts are
# kept from between runs (neither queried nor listed), and the scratch folders of work under way.
SOURCE_TABLES = ("customer", "product", "sales")
MARTS = ("customer_monthly", "product_monthly", "daily_sales")
CUSTOMER_STATE, PRODUCT_DAYS, GONE = "_customer_state", "_product_daily", "_gone_customers"
KEPT = (CUSTOMER_STATE, PRODUCT_DAYS, GONE)
SCRATCH = ("rebuild", "erasure", "pull")

# What a root minilake made holds (any of): a folder of deliveries, or minilake's own.
MARKS = ("landing_zone/", "archive/", "tables/", "minilake.toml")
SETTINGS = """# minilake's settings for this root (docs/history.md)

[history]
# how long table versions are kept: "forever", or a whole number of days
keep_days = "forever"
"""


def is_root(path: Path | UPath) -> bool:
    """Whether ``path`` holds one of :data:`MARKS` (one listing request on S3)."""
    if storage.is_local(path):
        return any((Path(path) / mark.rstrip("/")).exists() for mark in MARKS)
    try:
        names = {name.rstrip("/").rsplit("/", 1)[-1] for name in path.fs.ls(path.path,
                                                                          detail=False)}
    except FileNotFoundError:
        return False
    return any(mark.rstrip("/") in names for mark in MARKS)


def init(root: str | Path | UPath) -> str:
    """Make ``root`` a minilake root: ``landing_zone/`` and a ``minilake.toml`` of the
    default settings (each only if absent). Returns what was done, one line."""
    path = storage.locate(root, create=True)
    made = []
    settings = path / "minilake.toml"
    if not settings.exists():
        storage.write_bytes(settings, SETTINGS.encode("utf-8"))
        made.append("minilake.toml")
    if storage.is_local(path):
        landing = Path(path) / "landing_zone"
        if not landing.is_dir():
            landing.mkdir(parents=True)
            made.append("landing_zone/")
    shown = path if storage.is_local(path) else storage.uri(path)
    return (f"{shown} is a minilake root; made {', '.join(made)}" if made
            else f"{shown} is a minilake root already; nothing to make")
