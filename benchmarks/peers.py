"""What a data engineer would write instead of minilake, for ``run.py --peers`` (issue 19).

Two peers keep the same SCD2 tables from the same raw files, one process per day:

- ``duckdb``: a hand-written DuckDB script. Every field read as text (no validation, no typing);
  a row's hash is DuckDB's ``hash()`` of its fields joined; snapshots (customer, product)
  expire the current versions of changed and vanished keys at the file date and insert new
  versions; sales expire the current version of a changed ``sale_id`` and insert. The tables
  live in one DuckDB database file.
- ``dbt``: dbt-duckdb snapshots (``strategy: check`` on every business column,
  ``hard_deletes: invalidate`` for the snapshots), one ``dbt snapshot`` per day, in a venv of
  its own (``benchmarks/.venv-dbt``, pinned by ``benchmarks/requirements-dbt.txt``).

Neither validates a row: a bad value is loaded as it is. ``counts`` gives each table's current
and total version counts, which ``run.py`` checks against minilake's.

    python benchmarks/peers.py duckdb DB LANDING YYYYMMDD     # one day into DB
    python benchmarks/peers.py counts DB                       # current/total per table
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

# minilake's sources, as the peers see them: a file per day, a key, every column as text
TABLES = {
    "customer": {"file": "customer_{day}.csv", "key": "customer_id", "snapshot": True},
    "product": {"file": "products_{day}.json", "key": "product_id", "snapshot": True},
    "sales": {"file": "sales_{day}.txt", "key": "sale_id", "snapshot": False},
}
SALES_COLUMNS = ["sale_id", "customer_id", "product_id", "quantity", "price_per_unit",
                 "total_price", "sale_date"]
PRODUCT_COLUMNS = ["name", "product_id", "price", "description", "creation_date"]


def reader(name: str, path: Path) -> str:
    """A DuckDB table function reading one raw file, every field as text."""
    if name == "customer":
        return f"read_csv('{path}', header = true, all_varchar = true, quote = '\"')"
    if name == "product":
        columns = ", ".join(f"'{c}': 'VARCHAR'" for c in PRODUCT_COLUMNS)
        return f"read_json('{path}', format = 'array', columns = {{{columns}}})"
    columns = ", ".join(f"'{c}': 'VARCHAR'" for c in SALES_COLUMNS)
    return (f"read_csv('{path}', header = false, delim = '~', quote = '', "
            f"columns = {{{columns}}})")


def one_day(db: Path, landing: Path, day: str) -> None:
    import duckdb

    date = dt.datetime.strptime(day, "%Y%m%d").date().isoformat()
    with duckdb.connect(str(db)) as con:
        for name, spec in TABLES.items():
            path = landing / spec["file"].format(day=day)
            if not path.exists():
                continue
            key = spec["key"]
            con.execute(f"CREATE OR REPLACE TEMP TABLE incoming AS SELECT * FROM "
                        f"{reader(name, path)}")
            columns = [r[0] for r in con.execute("DESCRIBE incoming").fetchall()]
            joined = ", ".join(f"coalesce({c}, '\\N')" for c in columns)
            con.execute(f"CREATE OR REPLACE TEMP TABLE staged AS SELECT *, "
                        f"hash(concat_ws(chr(31), {joined})) AS row_hash FROM incoming")
            con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT *, DATE '{date}' AS "
                        f"effective_from, DATE '2099-12-31' AS expiry_date, true AS "
                        f"is_current FROM staged LIMIT 0")
            vanished = f"s.{key} IS NULL OR " if spec["snapshot"] else ""
            join = "LEFT JOIN" if spec["snapshot"] else "JOIN"
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE ending AS
                SELECT t.{key} FROM {name} t {join} staged s ON s.{key} = t.{key}
                WHERE t.is_current AND ({vanished}s.row_hash <> t.row_hash)""")
            con.execute(f"UPDATE {name} SET expiry_date = DATE '{date}', is_current = false "
                        f"WHERE is_current AND {key} IN (SELECT {key} FROM ending)")
            con.execute(f"""
                INSERT INTO {name} SELECT s.*, DATE '{date}', DATE '2099-12-31', true
                FROM staged s ANTI JOIN (SELECT {key} FROM {name} WHERE is_current) c
                ON c.{key} = s.{key}""")


def counts(db: Path, dbt: bool = False) -> dict[str, tuple[int, int]]:
    """Per table (current versions, all versions); ``dbt``: of dbt's snapshot tables."""
    import duckdb

    current = "dbt_valid_to IS NULL" if dbt else "is_current"
    with duckdb.connect(str(db), read_only=True) as con:
        return {name: tuple(con.execute(f"SELECT count(*) FILTER ({current}), count(*) "
                                        f"FROM {name}").fetchone()) for name in TABLES}


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "duckdb":
        one_day(Path(rest[0]), Path(rest[1]), rest[2])
    elif command == "counts":
        print(counts(Path(rest[0])))
    else:
        raise SystemExit(__doc__)
