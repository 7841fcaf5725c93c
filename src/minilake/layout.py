"""Where things live under a root (SPEC §6, §12): any folder laid out like the repository, or
an S3 prefix laid out the same way (``s3://bucket/prefix``). Paths are local ``Path``s or
``UPath``s on S3; :mod:`minilake.storage` does what the two do differently."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from minilake import storage

if TYPE_CHECKING:
    from upath import UPath


@dataclass(frozen=True)
class Layout:
    root: Path | UPath

    @classmethod
    def of(cls, root: str | Path | UPath, create: bool = False) -> Layout:
        """The layout of ``root``, which must exist (a one-line :class:`StorageError` if it
        does not, or if its scheme is unknown) unless ``create``."""
        path = storage.locate(root, create=create)
        # before anything is moved: the run would stop at a table
        if storage.is_local(path) and "%" in str(path):
            raise ValueError(f"{path}: a root whose path holds '%' cannot hold the Delta "
                             f"tables (delta-rs reads '%20' in a path as an escape); "
                             f"use a folder without '%'")
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

    @property
    def ingest_log(self) -> Path | UPath:
        return self.table("_ingest_log")

    @property
    def erasure_log(self) -> Path | UPath:
        return self.table("_erasure_log")

    @property
    def pull_log(self) -> Path | UPath:
        return self.table("_pull_log")

    def error_report(self, source: str, stamp: str) -> Path | UPath:
        return self.root / "error_reports" / f"errors_{source}_{stamp}.csv"

    @property
    def reports(self) -> Path | UPath:
        return self.root / "reports"

    @property
    def final_results(self) -> Path | UPath:
        return self.root / "final_results"
