"""Where things live under a root (SPEC §6); any folder laid out like the repository works."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def of(cls, root: str | Path) -> Layout:
        path = Path(root).resolve()
        if "%" in str(path):        # before anything is moved: the run would stop at a table
            raise ValueError(f"{path}: a root whose path holds '%' cannot hold the Delta "
                             f"tables (delta-rs reads '%20' in a path as an escape); "
                             f"use a folder without '%'")
        return cls(path)

    @property
    def landing(self) -> Path:
        return self.root / "landing_zone"

    def archive(self, source: str) -> Path:
        return self.root / "archive" / source

    def quarantine(self, source: str) -> Path:
        return self.root / "quarantine" / source

    def table(self, name: str) -> Path:
        return self.root / "tables" / name

    @property
    def ingest_log(self) -> Path:
        return self.table("_ingest_log")

    @property
    def erasure_log(self) -> Path:
        return self.table("_erasure_log")

    @property
    def pull_log(self) -> Path:
        return self.table("_pull_log")

    def error_report(self, source: str, stamp: str) -> Path:
        return self.root / "error_reports" / f"errors_{source}_{stamp}.csv"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def final_results(self) -> Path:
        return self.root / "final_results"
