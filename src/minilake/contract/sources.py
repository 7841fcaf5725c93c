"""The three sources, declared in one place (docs/formats.md).

A source is a file-name prefix with the forms its files come in (an extension and a reader
each: sales arrive as ``~`` text, or as JSON when pulled from an API, docs/formats.md), a key,
whether a
file is a full snapshot or a batch of transactions, and a pandera schema. Adding a fourth
source is one more :class:`Source` here and one more schema in ``schemas.py``; nothing else
names the sources.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import pandera.pandas as pa

from minilake.contract import drift, schemas
from minilake.formats import readers
from minilake.lake import policy


@dataclass(frozen=True)
class Form:
    """One way a source's file arrives: a file-name extension and the reader for it."""

    extension: str
    reader: readers.Reader


CSV = Form("csv", readers.read_quoted_csv)
JSON = Form("json", readers.read_json_array)     # also what ``pull`` lands (docs/formats.md)
TILDE = Form("txt", readers.read_tilde_lines)


@dataclass(frozen=True)
class Source:
    name: str
    prefix: str                       # files are <prefix>_YYYYMMDD.<extension of a form>
    forms: tuple[Form, ...]           # the first is the source's usual form
    key: str
    snapshot: bool                    # full snapshot (absent keys are deleted) or transactional
    schema: pa.DataFrameSchema
    # Table partition columns besides is_current. Sales are partitioned by sale date, so a
    # day's corrections rewrite only that day's files, not every file of current sales.
    partition_by: tuple[str, ...] = ()
    # what a file whose columns differ from ``schema`` does (docs/contracts.md); a root's
    # minilake.toml may declare another (:func:`of_root`)
    contract: drift.Contract = drift.Contract()

    @property
    def columns(self) -> list[str]:
        return list(self.schema.columns)

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """File names of every form; group 1 is the file date, group 2 the extension."""
        extensions = "|".join(re.escape(f.extension) for f in self.forms)
        # [0-9], not \d: \d (and int()) take any script's digits, "customer_٢٠٢٤١٠١٢.csv" too
        return re.compile(rf"{re.escape(self.prefix)}_([0-9]{{8}})\.({extensions})")

    def form(self, name: str) -> Form | None:
        """The form of a file name this source owns, None if it is not one of its files."""
        if self.file_date(name) is None:
            return None
        extension = name.rpartition(".")[2]
        return next(f for f in self.forms if f.extension == extension)

    def file_date(self, name: str) -> dt.date | None:
        """The file date of a name this source owns, None if it is not one of its files."""
        match = self.pattern.fullmatch(name)
        if not match:
            return None
        stamp = match.group(1)          # eight digits: strptime cost 35 us a name, every name
        try:                            # of a three-year archive read on every run
            return dt.date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:]))
        except ValueError:
            return None

    def file_name(self, day: dt.date, form: Form) -> str:
        return f"{self.prefix}_{day:%Y%m%d}.{form.extension}"

    def report_stamp(self, name: str) -> str:
        """What names a file's error report: its date, and its form unless it is the usual
        one (``20241009``; ``20241009_json`` for a sales day pulled from an API), so that two
        deliveries of one date never share a report."""
        stamp = self.file_date(name).strftime("%Y%m%d")
        form = self.form(name)
        return stamp if form == self.forms[0] else f"{stamp}_{form.extension}"

    def read(self, path: Path) -> readers.TextFrame:
        """A file's rows as text, its columns settled by the contract (``changes``), and the
        columns it needs wider than declared (``widened``)."""
        form = self.form(path.name)
        if not self.contract.drifts:
            text = form.reader(path, self.columns)
        else:
            text = form.reader(path, self.columns, drift=True)
            text.changes = drift.settle(
                self.schema, self.contract, text,
                "key" if form.reader is readers.read_json_array else "column")
        if self.contract.widen:
            text.widened = drift.widenings(self.schema, self.contract, text)
        return text

    def widened(self, kinds: dict[str, str]) -> Source:
        """The source with the columns of ``kinds`` (a table's widened columns, or a file's,
        docs/contracts.md) of those kinds: what validates, types and stores them."""
        if not kinds:
            return self
        return dataclasses.replace(self, schema=schemas.widened(self.schema, kinds))


SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("customer", "customer", (CSV, JSON), key="customer_id", snapshot=True,
           schema=schemas.CUSTOMER),
    Source("product", "products", (JSON,), key="product_id", snapshot=True,
           schema=schemas.PRODUCT),
    Source("sales", "sales", (TILDE, JSON), key="sale_id", snapshot=False,
           schema=schemas.SALES, partition_by=("sale_date",)),
]}


# docs/guarantees.md: erasure requests arrive like a source's files (split, validated, error report,
# ingest log) but make no table of their own: they rewrite the others (``erasure.py``).
ERASURE_REQUESTS = Source(
    "erasure_requests", "erasure_requests",
    (Form("json", partial(readers.read_json_array, aliases={"customer-id": "customer_id"},
                          absent_ok=True)),),
    key="customer_id", snapshot=False, schema=schemas.ERASURE_REQUESTS)

ALL_SOURCES: dict[str, Source] = {**SOURCES, ERASURE_REQUESTS.name: ERASURE_REQUESTS}


def source_of(name: str) -> Source | None:
    """The source whose pattern and calendar the file name matches."""
    for source in ALL_SOURCES.values():
        if source.file_date(name) is not None:
            return source
    return None


def _cannot_widen(source: Source, column: str) -> str | None:
    """Why ``column`` of ``source`` cannot be named in ``widen`` (docs/contracts.md), or
    None: only a declared date or integer column that no table is keyed or partitioned by."""
    if column not in source.columns:
        return f"is no column of {source.name}"
    kind = source.schema.columns[column].metadata["kind"]
    keyed = [s.name for s in SOURCES.values() if s.key == column and s is not source]
    return ("is the key" if column == source.key
            else "is a partition column" if column in source.partition_by
            else f"is the {keyed[0]}'s key, which the marts join on" if keyed
            else None if kind in schemas.WIDER
            else f"is of kind {kind}: only a date (to a date and time) or an integer (to a "
                 f"number) widens")


def of_root(root) -> dict[str, Source]:
    """The sources as ``root`` declares them: each with the contract its ``minilake.toml``
    gives it (``[contract.<source>]``, docs/contracts.md), else its declaration's."""
    contracts = drift.declared(root)
    unknown = sorted(set(contracts) - set(SOURCES))
    if unknown:
        raise drift.ContractError(f"{root / policy.FILE}: [contract.{unknown[0]}]: no such "
                                  f"source (sources: {', '.join(SOURCES)})")
    for name, contract in contracts.items():
        wrong = [new for _, new in contract.renamed if new not in SOURCES[name].columns]
        if wrong:
            raise drift.ContractError(f"{root / policy.FILE}: [contract.{name}] renamed: "
                                      f"{wrong[0]!r} is no column of {name}")
        if contract.personal and name != "customer":
            raise drift.ContractError(f"{root / policy.FILE}: [contract.{name}] personal: "
                                      f"an erasure erases customers' rows only; only "
                                      f"[contract.customer] names personal columns")
        declared = [c for c in contract.personal if c in SOURCES[name].columns]
        if declared:
            raise drift.ContractError(f"{root / policy.FILE}: [contract.{name}] personal: "
                                      f"{declared[0]!r} is a declared column (an erasure "
                                      f"erases the declared personal columns already)")
        for column in contract.widen:
            why = _cannot_widen(SOURCES[name], column)
            if why:
                raise drift.ContractError(f"{root / policy.FILE}: [contract.{name}] widen: "
                                          f"{column!r} {why}")
        for column in contract.in_place:
            if column == SOURCES[name].key:
                raise drift.ContractError(f"{root / policy.FILE}: [contract.{name}] in_place: "
                                          f"{column!r} is the key: a key is never updated")
            addable = (contract.new_column == "evolve" or column == drift.EXTRA
                       and contract.new_column == "keep_extra")
            if column not in SOURCES[name].columns and not addable:
                raise drift.ContractError(
                    f"{root / policy.FILE}: [contract.{name}] in_place: {column!r} is no "
                    f"column of {name} (nor one its contract may add)")
    return {name: dataclasses.replace(source, contract=contracts.get(name, source.contract))
            for name, source in SOURCES.items()}
