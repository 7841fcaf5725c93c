"""Data marts for dashboards (SPEC §11), under ``tables/marts/``, partitioned by month.

Computed with DuckDB from the current sales and the customer and product versions, each sale
meeting the versions valid on its date (§5). ``refresh`` recomputes only the months given (those
the run's files touched) and writes each mart's months in one Delta commit that replaces just
those partitions (``predicate``), so a reader sees a month before or after, never half.

- ``customer_monthly``: per customer and month, orders, quantity and money; membership as of
  the month's last sale (null when no customer version was valid then: a customer deleted
  upstream), names from that version, else from the customer's latest version begun by then
  (null when the customer never had one);
- ``product_monthly``: per product, name as of the sale, membership and month: orders,
  quantity, revenue and ``avg_unit_price`` = revenue ÷ quantity;
- ``daily_sales``: per day and membership: orders, revenue, distinct customers.

Money is rounded to two decimals after summing; every mart's money sums to the current sales of
its months.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from minilake import storage
from minilake.crashpoints import crashpoint
from minilake.layout import Layout
from minilake.load import tables

MARTS = ("customer_monthly", "product_monthly", "daily_sales")

# Every sale of the months with the customer and product versions valid on its date: made
# once per refresh (a temporary DuckDB table), then aggregated into each mart.
JOINED = """
    CREATE TEMP TABLE j AS
    SELECT s.*, CAST(date_trunc('month', s.sale_date) AS DATE) AS month,
           c.membership_status, p.name
    FROM _sales AS s
    LEFT JOIN _customer AS c ON c.customer_id = s.customer_id
        AND c.effective_from <= s.sale_date AND s.sale_date < c.expiry_date
    LEFT JOIN _product AS p ON p.product_id = s.product_id
        AND p.effective_from <= s.sale_date AND s.sale_date < p.expiry_date
"""
QUERIES = {
    "customer_monthly": """
        WITH last AS (
            SELECT month, customer_id, arg_max_null(membership_status, (sale_date, sale_id))
                       AS membership_status,
                   max(sale_date) AS last_sale,
                   count(*) AS orders, sum(quantity) AS total_quantity,
                   round(sum(total_price), 2) AS total_spent
            FROM j GROUP BY month, customer_id),
        named AS (
            SELECT last.*, v.first_name, v.last_name,
                   row_number() OVER (PARTITION BY last.month, last.customer_id
                       ORDER BY (v.effective_from <= last.last_sale
                                 AND last.last_sale < v.expiry_date) DESC,
                                v.effective_from DESC) AS rank
            FROM last LEFT JOIN _customer AS v ON v.customer_id = last.customer_id
                AND v.effective_from <= last.last_sale)
        SELECT month, customer_id, first_name, last_name, membership_status, orders,
               total_quantity, total_spent
        FROM named WHERE rank = 1 ORDER BY month, customer_id""",
    "product_monthly": """
        SELECT month, product_id, name, membership_status, count(*) AS orders,
               sum(quantity) AS total_quantity, round(sum(total_price), 2) AS revenue,
               round(sum(total_price) / sum(quantity), 2) AS avg_unit_price
        FROM j GROUP BY ALL ORDER BY month, product_id, name, membership_status""",
    "daily_sales": """
        SELECT month, sale_date, membership_status, count(*) AS orders,
               round(sum(total_price), 2) AS revenue, count(DISTINCT customer_id) AS customers
        FROM j GROUP BY ALL ORDER BY sale_date, membership_status""",
}
SALE_COLUMNS = ["sale_id", "customer_id", "product_id", "quantity", "total_price", "sale_date"]


def _month(day: dt.date) -> dt.date:
    return day.replace(day=1)


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    out, month = [], _month(first)
    while month <= last:
        out.append(month)
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return out


def sales_months(layout: Layout) -> list[dt.date]:
    """Every month with a current sale."""
    path = layout.table("sales")
    if not tables.exists(path):
        return []
    dates = tables.dataset(path).to_table(columns=["sale_date"]).column("sale_date")
    if not len(dates):
        return []
    low, high = pc.min_max(dates).values()
    return months_between(low.as_py(), high.as_py())


STATE = "_refreshed.json"


def refreshed_through(layout: Layout):
    """The ``finished_at`` of the last ingest-log row the marts reflect; None before the
    marts exist."""
    import pandas as pd

    path = layout.table("marts") / STATE
    if not path.is_file() or not all(tables.exists(layout.table("marts") / m) for m in MARTS):
        return None
    return pd.Timestamp(json.loads(path.read_text(encoding="utf-8"))["log_finished_at"])


def _mark_refreshed(layout: Layout, through) -> None:
    storage.write_bytes(layout.table("marts") / STATE,
                        json.dumps({"log_finished_at": through.isoformat()}).encode("utf-8"))


def refresh(root: str | Path = ".", months: list[dt.date] | None = None) -> dict[str, int]:
    """Recompute the marts for ``months`` (all months with sales when None); returns rows
    written per mart. Without the three tables there is nothing to compute. Afterwards the
    marts are marked as reflecting the ingest log as it stands."""
    layout = Layout.of(root)
    log_rows = tables.read_log(layout)
    written = _refresh(layout, months)
    if len(log_rows) and all(tables.exists(layout.table("marts") / m) for m in MARTS):
        _mark_refreshed(layout, log_rows["finished_at"].max())
    return written


def _refresh(layout: Layout, months: list[dt.date] | None) -> dict[str, int]:
    import duckdb

    if not all(tables.exists(layout.table(n)) for n in ("customer", "product", "sales")):
        return {}
    every = sales_months(layout)
    months = sorted(set(every if months is None else months) & set(every)) if every else []
    if not months:
        return {}
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    first, last = months[0], (months[-1] + dt.timedelta(days=32)).replace(day=1)
    day = pa.scalar
    in_months = None
    for month in months:
        following = (month + dt.timedelta(days=32)).replace(day=1)
        one = ((pc.field("sale_date") >= day(month, pa.date32()))
               & (pc.field("sale_date") < day(following, pa.date32())))
        in_months = one if in_months is None else in_months | one
    sales = tables.dataset(layout.table("sales")).to_table(
        columns=SALE_COLUMNS, filter=in_months & pc.field("is_current"))
    overlapping = ((pc.field("effective_from") < day(last, pa.date32()))
                   & (pc.field("expiry_date") > day(first, pa.date32())))
    # the versions valid at some moment of the months; and, for a customer with none (deleted
    # upstream before), their earlier versions, whose names the customer mart shows
    columns = ["customer_id", "first_name", "last_name", "membership_status",
               "effective_from", "expiry_date"]
    customers = tables.dataset(layout.table("customer"))
    customer = customers.to_table(columns=columns, filter=overlapping)
    unseen = pc.filter(pc.unique(sales.column("customer_id")), pc.invert(pc.is_in(
        pc.unique(sales.column("customer_id")), value_set=customer.column("customer_id"))))
    if len(unseen):
        earlier = customers.to_table(columns=columns, filter=pc.field("customer_id").isin(
            unseen) & (pc.field("effective_from") < day(last, pa.date32())))
        customer = pa.concat_tables([customer, earlier.cast(customer.schema)])
    product = tables.dataset(layout.table("product")).to_table(
        columns=["product_id", "name", "effective_from", "expiry_date"], filter=overlapping)
    con.register("_sales", sales)
    con.register("_customer", customer)
    con.register("_product", product)
    con.execute(JOINED)
    con.unregister("_sales")
    del sales                   # the joined rows are DuckDB's now
    written = {}
    for name, query in QUERIES.items():
        rows = con.sql(query).to_arrow_table()
        _replace_months(layout.table("marts") / name, rows, months)
        crashpoint("marts.written")
        written[name] = rows.num_rows
    con.close()
    return written


def _replace_months(path: Path, rows: pa.Table, months: list[dt.date]) -> None:
    """One commit: the months' partitions replaced by ``rows`` (the other months kept)."""
    if not tables.exists(path):
        tables.write(path, rows, partition_by=["month"], mode="overwrite")
        return
    listed = ", ".join(f"'{m.isoformat()}'" for m in months)
    tables.write(path, rows, partition_by=["month"], mode="overwrite",
                 predicate=f"month IN ({listed})")


def marts(root: str | Path = ".", months: list[dt.date] | None = None) -> dict[str, int]:
    """Recompute the marts (every month, or ``months``) holding the root's lock
    (``python -m minilake marts``); rows written per mart."""
    from minilake.lock import hold

    layout = Layout.of(root)
    with hold(layout.root, "marts"):
        return refresh(layout.root, months)


def read_mart(name: str, root: str | Path = ".") -> pa.Table:
    if name not in MARTS:
        raise ValueError(f"no mart {name!r}; marts: {', '.join(MARTS)}")
    path = Layout.of(root).table("marts") / name
    if not tables.exists(path):
        raise FileNotFoundError(f"no mart {name!r} yet under {path.parent} (run, or marts)")
    return tables.dataset(path).to_table()
