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

The DuckDB peer also keeps minilake's three marts (README, marts and SQL) in SQL, as a data
engineer would: after a day's SCD2 step, ``marts`` deletes the months from that day's month on
and inserts them again from the current sales joined with the customer and product versions
valid on each sale's date (customer_monthly takes names and membership as of the month's last
sale, by an ASOF join). ``mart_totals`` sums each mart so ``run.py`` can check them against
minilake's.

    python benchmarks/peers.py duckdb DB LANDING YYYYMMDD     # one day into DB
    python benchmarks/peers.py marts DB YYYYMMDD               # the marts from that day's month on
    python benchmarks/peers.py day DB LANDING YYYYMMDD        # both; prints the marts' seconds
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


# The marts from the month {first} on, in SQL over the peer's tables (every field text: cast).
SALES = """
    SELECT CAST(customer_id AS BIGINT) AS customer_id, product_id,
           CAST(quantity AS BIGINT) AS quantity, CAST(total_price AS DOUBLE) AS total_price,
           CAST(sale_date AS DATE) AS sale_date,
           CAST(date_trunc('month', CAST(sale_date AS DATE)) AS DATE) AS month
    FROM sales WHERE is_current AND CAST(sale_date AS DATE) >= DATE '{first}'"""
CUSTOMERS = """
    SELECT CAST(customer_id AS BIGINT) AS customer_id, first_name, last_name,
           membership_status, effective_from, expiry_date FROM customer"""
JOINED = f"""
    SELECT s.*, c.membership_status, p.name
    FROM ({SALES}) AS s
    LEFT JOIN ({CUSTOMERS}) AS c ON c.customer_id = s.customer_id
        AND c.effective_from <= s.sale_date AND s.sale_date < c.expiry_date
    LEFT JOIN product AS p ON p.product_id = s.product_id
        AND p.effective_from <= s.sale_date AND s.sale_date < p.expiry_date"""
MARTS = {
    "customer_monthly": f"""
        WITH m AS (SELECT month, customer_id, count(*) AS orders,
                          sum(quantity) AS total_quantity,
                          round(sum(total_price), 2) AS total_spent, max(sale_date) AS last_sale
                   FROM ({SALES}) GROUP BY ALL)
        SELECT m.month, m.customer_id, v.first_name, v.last_name,
               CASE WHEN m.last_sale < v.expiry_date THEN v.membership_status END
                   AS membership_status, m.orders, m.total_quantity, m.total_spent
        FROM m ASOF LEFT JOIN ({CUSTOMERS}) AS v
            ON v.customer_id = m.customer_id AND v.effective_from <= m.last_sale""",
    "product_monthly": f"""
        SELECT month, product_id, name, membership_status, count(*) AS orders,
               sum(quantity) AS total_quantity, round(sum(total_price), 2) AS revenue,
               round(sum(total_price) / sum(quantity), 2) AS avg_unit_price
        FROM ({JOINED}) GROUP BY ALL""",
    "daily_sales": f"""
        SELECT month, sale_date, membership_status, count(*) AS orders,
               round(sum(total_price), 2) AS revenue, count(DISTINCT customer_id) AS customers
        FROM ({JOINED}) GROUP BY ALL""",
}


def marts(db: Path, day: str) -> None:
    """The marts' months from ``day``'s month on, deleted and inserted again."""
    import duckdb

    first = dt.datetime.strptime(day, "%Y%m%d").date().replace(day=1).isoformat()
    with duckdb.connect(str(db)) as con:
        con.execute("BEGIN")
        for name, query in MARTS.items():
            query = query.format(first=first)
            con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS {query} LIMIT 0")
            con.execute(f"DELETE FROM {name} WHERE month >= DATE '{first}'")
            con.execute(f"INSERT INTO {name} {query}")
        con.execute("COMMIT")


# What run.py compares, the same SQL over the peer's tables and over minilake's (``sql``):
# per table its current and all versions, per mart its rows, money to the cent and orders.
COUNTS = "SELECT count(*) FILTER ({current}), count(*) FROM {name}"
TOTALS = "SELECT count(*), round(sum({money}), 2), sum(orders) FROM {name}"
MART_MONEY = {"customer_monthly": "total_spent", "product_monthly": "revenue",
              "daily_sales": "revenue"}


def count_queries(current: str = "is_current") -> dict[str, str]:
    return {name: COUNTS.format(current=current, name=name) for name in TABLES}


def total_queries() -> dict[str, str]:
    return {name: TOTALS.format(money=money, name=name) for name, money in MART_MONEY.items()}


def first_rows(db: Path, queries: dict[str, str]) -> dict[str, tuple]:
    """The first row of each query over the database file ``db``, by the query's name."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return {name: tuple(con.execute(query).fetchone()) for name, query in queries.items()}


def mart_totals(db: Path) -> dict[str, tuple]:
    """Per mart (rows, money to the cent, orders)."""
    return first_rows(db, total_queries())


def counts(db: Path, dbt: bool = False) -> dict[str, tuple]:
    """Per table (current versions, all versions); ``dbt``: of dbt's snapshot tables."""
    return first_rows(db, count_queries("dbt_valid_to IS NULL" if dbt else "is_current"))


if __name__ == "__main__":
    command, *rest = sys.argv[1:] or ["help"]
    if command == "duckdb":
        one_day(Path(rest[0]), Path(rest[1]), rest[2])
    elif command == "day":
        import json
        import time

        one_day(Path(rest[0]), Path(rest[1]), rest[2])
        began = time.perf_counter()
        marts(Path(rest[0]), rest[2])
        print(json.dumps({"marts_s": time.perf_counter() - began}))
    elif command == "marts":
        marts(Path(rest[0]), rest[1])
    elif command == "counts":
        print(counts(Path(rest[0])))
    elif command == "mart_totals":
        print(mart_totals(Path(rest[0])))
    else:
        raise SystemExit(__doc__)
