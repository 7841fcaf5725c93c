"""SQL over every table and point in time (README.md, marts and SQL), on DuckDB in-process.

Each Delta table's live files are registered as a pyarrow dataset (no DuckDB extension is
installed or loaded), so DuckDB scans them with its filters pushed down. Names:

- ``customer``, ``product``, ``sales``: every version; ``customer_current`` … the current ones;
- ``customer_as_of('YYYY-MM-DD')`` … (table macros): the versions valid on that date, exactly
  ``read_table(name, as_of=…)``;
- the marts ``customer_monthly``, ``product_monthly``, ``daily_sales``; ``ingest_log``,
  ``pull_log``, ``erasure_log``;
- ``known_at=T`` (``--known-at``): every table as it stood at time T, so a query reads what the
  lake said then (``customer_as_of(D)`` at T: business date D as known at T).

Read-only: one statement, a ``SELECT`` (or ``EXPLAIN``); anything else is refused with a
one-line reason before it runs. External access (files, network) and configuration changes are
switched off for the query.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa

from minilake.contract.sources import SOURCES
from minilake.lake import delta, duck
from minilake.lake.layout import MARTS, Layout
from minilake.load import history

LOGS = {"ingest_log": "_ingest_log", "pull_log": "_pull_log", "erasure_log": "_erasure_log",
        "rejects": "_rejects"}


class Refused(ValueError):
    """A statement that would write, or not one statement."""


def connect(root: str | Path = ".", known_at: dt.datetime | dt.date | str | None = None):
    """A DuckDB connection with the root's tables, views and macros, locked read-only; with
    ``known_at``, every table as it stood then (its last version committed by that time; a
    date means the end of that day, UTC), so ``customer_as_of(D)`` is what the lake said
    then about date D."""
    layout = Layout.of(root)
    con = duck.connect()
    named = {name: layout.table(name) for name in SOURCES}
    named |= {name: layout.mart(name) for name in MARTS}
    named |= {name: layout.table(folder) for name, folder in LOGS.items()}
    for name, path in named.items():
        if not delta.exists(path):
            continue
        version = None
        if known_at is not None:
            version = history.version_known_at(layout, name, path, known_at)
            if version is None:                 # not made yet at that time
                continue
        data = delta.dataset(path, version)
        con.register(f"_{name}", data)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM _{name}")
        if name in SOURCES:
            con.execute(f"CREATE VIEW {name}_current AS SELECT * FROM {name} WHERE is_current")
            con.execute(f"CREATE MACRO {name}_as_of(day) AS TABLE SELECT * FROM {name} "
                        f"WHERE effective_from <= CAST(day AS DATE) "
                        f"AND expiry_date > CAST(day AS DATE)")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def check_read_only(con, query: str) -> None:
    """Refuse, with a one-line reason, anything but one SELECT (or EXPLAIN)."""
    import duckdb  # on first use: start-up stays light

    try:
        statements = con.extract_statements(query)
    except duckdb.Error as error:
        raise Refused(f"not SQL DuckDB can read: {str(error).splitlines()[0]}") from None
    if len(statements) != 1:
        raise Refused(f"one statement at a time, read-only: got {len(statements)}")
    kind, text = statements[0].type, statements[0].query
    if kind == duckdb.StatementType.EXPLAIN:       # runs what it explains, with ANALYZE
        explained = _EXPLAIN.match(text)
        inner = con.extract_statements(text[explained.end():]) if explained else []
        if len(inner) != 1 or inner[0].type != duckdb.StatementType.SELECT:
            what = inner[0].type.name if len(inner) == 1 else "statement"
            raise Refused(f"read-only: EXPLAIN {what} is refused (only a SELECT may be "
                          f"explained)")
        return
    if kind != duckdb.StatementType.SELECT:
        raise Refused(f"read-only: a {kind.name} statement is refused (only SELECT runs here)")


_EXPLAIN = re.compile(r"\s*EXPLAIN\s+(ANALY[SZ]E\s+)?(\([^)]*\)\s*)?", re.IGNORECASE)


def _answer(query: str, root: str | Path, known_at, take):
    """One read-only query over the root's tables; ``take`` makes the answer of DuckDB's
    relation (a DataFrame, or an Arrow table)."""
    import duckdb  # on first use: start-up stays light

    con = connect(root, known_at)
    try:
        check_read_only(con, query)
        try:
            return take(con.sql(query))
        except duckdb.Error as error:
            raise ValueError(f"the query failed: {str(error).splitlines()[0]}") from None
    finally:
        con.close()


def sql_table(query: str, root: str | Path = ".",
              known_at: dt.datetime | dt.date | str | None = None) -> pa.Table:
    """What :func:`sql` answers, as DuckDB's Arrow result: a DATE stays a date and a DECIMAL
    a decimal (pandas would make them a midnight timestamp and a float), for writers that
    keep types exactly (``sql --format json``)."""
    return _answer(query, root, known_at, lambda relation: relation.to_arrow_table())


def sql(query: str, root: str | Path = ".",
        known_at: dt.datetime | dt.date | str | None = None) -> pd.DataFrame:
    """Run one read-only query over the root's tables (as they stood at ``known_at``, if
    given); the result as a DataFrame."""
    return _answer(query, root, known_at, lambda relation: relation.df())


def names(root: str | Path = ".") -> list[str]:
    """What a query can name under this root."""
    con = connect(root)
    try:
        return sorted(r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND NOT starts_with(table_name, '_')").fetchall())
    finally:
        con.close()
