"""The three sources, declared in one place (SPEC §1).

A source is a file-name pattern, a reader, a key, whether a file is a full snapshot or a batch of
transactions, and a pandera schema. Adding a fourth source is one more :class:`Source` here and
one more schema in ``schemas.py``; nothing else names the sources.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pandera.pandas as pa

from minilake import readers, schemas


@dataclass(frozen=True)
class Source:
    name: str
    pattern: re.Pattern[str]          # group 1 is the file date, YYYYMMDD
    reader: readers.Reader
    key: str
    snapshot: bool                    # full snapshot (absent keys are deleted) or transactional
    schema: pa.DataFrameSchema
    # Table partition columns besides is_current. Sales are partitioned by sale date, so a
    # day's corrections rewrite only that day's files, not every file of current sales.
    partition_by: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        return list(self.schema.columns)

    def file_date(self, name: str) -> dt.date | None:
        """The file date of a name this source owns, None if it is not one of its files."""
        match = self.pattern.fullmatch(name)
        if not match:
            return None
        try:
            return dt.datetime.strptime(match.group(1), "%Y%m%d").date()
        except ValueError:
            return None

    def read(self, path: Path) -> readers.TextFrame:
        return self.reader(path, self.columns)


SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("customer", re.compile(r"customer_(\d{8})\.csv"), readers.read_quoted_csv,
           key="customer_id", snapshot=True, schema=schemas.CUSTOMER),
    Source("product", re.compile(r"products_(\d{8})\.json"), readers.read_json_array,
           key="product_id", snapshot=True, schema=schemas.PRODUCT),
    Source("sales", re.compile(r"sales_(\d{8})\.txt"), readers.read_tilde_lines,
           key="sale_id", snapshot=False, schema=schemas.SALES, partition_by=("sale_date",)),
]}


def source_of(name: str) -> Source | None:
    """The source whose pattern and calendar the file name matches."""
    for source in SOURCES.values():
        if source.file_date(name) is not None:
            return source
    return None
