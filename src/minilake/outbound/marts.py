"""Data marts for dashboards (README.md, marts and SQL), under ``tables/marts/``, partitioned by
month.

Computed with DuckDB from the current sales and the customer and product versions, each sale
meeting the versions valid on its date (docs/formats.md). Each mart's touched months are
written in one Delta commit that replaces just those partitions (``predicate``), so a reader
sees a month before or after, never half.

``update`` (what ``run`` does) moves the marts on from what the files applied since the last
refresh changed, so a day costs about a day, not its month: in order, those files' dates find
the sales versions they opened and closed (``effective_from``/``expiry_date`` is the file date).
Two tables under ``marts/`` keep what that needs: ``_customer_state`` (per month and customer
the sums of the current sales, the last sale's date and its number of sales), moved on by
adding the opened versions and subtracting the closed ones, its commit carrying the ingest-log
mark it reflects so a rerun never adds a day twice; and ``_product_daily`` (per sale date,
product, name and membership the sums). The sale dates those versions fall on, and every date
from a customer or product file's date on, are recomputed from their current sales (as
``daily_sales``); ``customer_monthly`` is then made from the state (names and membership from
the customer's latest version begun by the last sale; for a customer gone before the month,
their last version, looked up once a month and kept in ``_gone_customers``) and
``product_monthly`` from the product days. A late or resent file (a repair from its date on):
the months it changed, in full. A rebuild, an erasure, or marts not made yet: in full
(``refresh``), by the same code over every date of the months.

- ``customer_monthly``: per customer and month, orders, quantity and money; membership as of
  the month's last sale (null when no customer version was valid then: a customer deleted
  upstream), names from that version, else from the customer's latest version begun by then
  (null when the customer never had one);
- ``product_monthly``: per product, name as of the sale, membership and month: orders,
  quantity, revenue and ``avg_unit_price`` = revenue ÷ quantity;
- ``daily_sales``: per day and membership: orders, revenue, distinct customers.

Money is rounded to two decimals after summing; every mart's money sums to the current sales of
its months. Quantities are of the sales' type (:func:`schemas`): whole numbers (the marts'
decimal sums, as DuckDB sums integers; integers in the kept tables), or doubles once a contract
widened the sales' ``quantity`` (docs/contracts.md); marts and kept tables made before a widening
are then remade in full, each overwritten with its new schema in one commit (delta-rs changes a
column's type only so).

Longer than most because the three marts and the state they are kept from move on together,
from the same per-date queries; split apart, each would need the others' internals.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.exceptions import DeltaError

from minilake.contract.sources import ERASURE_REQUESTS, SOURCES
from minilake.crashpoints import crashpoint
from minilake.lake import delta, duck, logs, storage
from minilake.lake.layout import (  # noqa: F401 - MARTS, KEPT: the marts' names, here too
    CUSTOMER_STATE,
    GONE,
    KEPT,
    MARTS,
    PRODUCT_DAYS,
    Layout,
)
from minilake.lake.lock import hold

# The marts' names and what they are kept from between runs are the layout's (lake.layout):
# per month and customer the sums of their current sales and the date of their last one
# (CUSTOMER_STATE); per sale date, product, name and membership the sums (PRODUCT_DAYS); per
# month, the customers with no version valid on its first day and their latest version (GONE,
# made once a month from the customer history rather than read from it every day).


THROUGH = "minilake.marts_through"      # commit metadata of the customer state: its log mark

SCHEMAS = {
    "customer_monthly": pa.schema([
        ("month", pa.date32()), ("customer_id", pa.int64()), ("first_name", pa.string()),
        ("last_name", pa.string()), ("membership_status", pa.string()), ("orders", pa.int64()),
        ("total_quantity", pa.decimal128(38, 0)), ("total_spent", pa.float64())]),
    "product_monthly": pa.schema([
        ("month", pa.date32()), ("product_id", pa.string()), ("name", pa.string()),
        ("membership_status", pa.string()), ("orders", pa.int64()),
        ("total_quantity", pa.decimal128(38, 0)), ("revenue", pa.float64()),
        ("avg_unit_price", pa.float64())]),
    "daily_sales": pa.schema([
        ("month", pa.date32()), ("sale_date", pa.date32()), ("membership_status", pa.string()),
        ("orders", pa.int64()), ("revenue", pa.float64()), ("customers", pa.int64())]),
    CUSTOMER_STATE: pa.schema([
        ("month", pa.date32()), ("customer_id", pa.int64()), ("orders", pa.int64()),
        ("total_quantity", pa.int64()), ("spent", pa.float64()), ("last_sale", pa.date32()),
        ("last_count", pa.int64())]),
    PRODUCT_DAYS: pa.schema([
        ("month", pa.date32()), ("sale_date", pa.date32()), ("product_id", pa.string()),
        ("name", pa.string()), ("membership_status", pa.string()), ("orders", pa.int64()),
        ("total_quantity", pa.int64()), ("revenue", pa.float64())]),
    GONE: pa.schema([
        ("month", pa.date32()), ("customer_id", pa.int64()), ("first_name", pa.string()),
        ("last_name", pa.string()), ("membership_status", pa.string()),
        ("effective_from", pa.date32()), ("expiry_date", pa.date32())]),
}
QUANTITY = "total_quantity"      # the one column whose type follows the sales' (``schemas``)


def schemas(quantity: pa.DataType) -> dict[str, pa.Schema]:
    """The marts' and kept tables' schemas for sales whose ``quantity`` is of type ``quantity``:
    ``SCHEMAS`` for integers; for a floating quantity (widened by a contract,
    docs/contracts.md) every quantity a double, as DuckDB sums them (a sum of whole numbers
    stays exact to 2**53)."""
    if not pa.types.is_floating(quantity):
        return SCHEMAS
    return {name: pa.schema([f.with_type(pa.float64()) if f.name == QUANTITY else f
                             for f in schema]) for name, schema in SCHEMAS.items()}


MONTH = "CAST(date_trunc('month', sale_date) AS DATE)"

# The current sales of some dates with the customer and product versions valid on each
# sale's date (docs/formats.md), then summed per date: what the per-date rows are made of.
JOINED = f"""
    CREATE OR REPLACE TEMP TABLE j AS
    SELECT {MONTH} AS month, s.sale_date, s.customer_id, s.product_id, s.quantity,
           s.total_price, c.membership_status, p.name
    FROM _sales AS s
    LEFT JOIN _versions AS c ON c.customer_id = s.customer_id
        AND c.effective_from <= s.sale_date AND s.sale_date < c.expiry_date
    LEFT JOIN _products AS p ON p.product_id = s.product_id
        AND p.effective_from <= s.sale_date AND s.sale_date < p.expiry_date"""
BY_DATE = {
    PRODUCT_DAYS: """
        SELECT month, sale_date, product_id, name, membership_status, count(*) AS orders,
               sum(quantity) AS total_quantity, sum(total_price) AS revenue
        FROM j GROUP BY ALL""",
    "daily_sales": """
        SELECT month, sale_date, membership_status, count(*) AS orders,
               round(sum(total_price), 2) AS revenue, count(DISTINCT customer_id) AS customers
        FROM j GROUP BY ALL""",
}
# A month's customers in full: the sums, the last sale's date and how many sales it holds.
CUSTOMERS_IN_FULL = f"""
    WITH d AS (SELECT {MONTH} AS month, customer_id, sale_date, count(*) AS n,
                      sum(quantity) AS q, sum(total_price) AS p
               FROM _sales GROUP BY ALL)
    SELECT month, customer_id, sum(n) AS orders, sum(q) AS total_quantity, sum(p) AS spent,
           max(sale_date) AS last_sale, arg_max(n, sale_date) AS last_count
    FROM d GROUP BY ALL"""
# The customers' rows moved on by one date's sales, later than any before (``_in_full``; the
# query below would give the same, at two joins to the state instead of one).
CUSTOMERS_THEN_A_LATER_DATE = f"""
    WITH d AS ({CUSTOMERS_IN_FULL})
    SELECT coalesce(s.month, d.month) AS month,
           coalesce(s.customer_id, d.customer_id) AS customer_id,
           coalesce(s.orders, 0) + coalesce(d.orders, 0) AS orders,
           coalesce(s.total_quantity, 0) + coalesce(d.total_quantity, 0) AS total_quantity,
           coalesce(s.spent, 0) + coalesce(d.spent, 0) AS spent,
           coalesce(d.last_sale, s.last_sale) AS last_sale,
           coalesce(d.last_count, s.last_count) AS last_count
    FROM _state AS s FULL JOIN d ON s.month = d.month AND s.customer_id = d.customer_id"""
# The customers' rows moved on by the sales versions opened (+1) and closed (-1) since: sums
# add up; the last sale is a later added date, else the kept one while a sale of that date
# remains, else unknown (null: read again from the month's sales).
CUSTOMERS_MOVED_ON = f"""
    WITH d AS (SELECT {MONTH} AS month, customer_id, sale_date, sum(sign) AS n,
                      sum(sign * quantity) AS q, sum(sign * total_price) AS p
               FROM _delta GROUP BY ALL),
    m AS (SELECT d.month, d.customer_id, sum(d.n) AS n, sum(d.q) AS q, sum(d.p) AS p,
                 max(d.sale_date) FILTER (WHERE s.last_sale IS NULL
                                          OR d.sale_date > s.last_sale) AS later,
                 arg_max(d.n, d.sale_date) FILTER (WHERE s.last_sale IS NULL
                                                   OR d.sale_date > s.last_sale) AS later_n,
                 coalesce(sum(d.n) FILTER (WHERE d.sale_date = s.last_sale), 0) AS at_last
          FROM d LEFT JOIN _state AS s ON s.month = d.month AND s.customer_id = d.customer_id
          GROUP BY d.month, d.customer_id),
    moved AS (
        SELECT coalesce(s.month, m.month) AS month,
               coalesce(s.customer_id, m.customer_id) AS customer_id,
               coalesce(s.orders, 0) + coalesce(m.n, 0) AS orders,
               coalesce(s.total_quantity, 0) + coalesce(m.q, 0) AS total_quantity,
               coalesce(s.spent, 0) + coalesce(m.p, 0) AS spent,
               CASE WHEN m.later IS NOT NULL THEN m.later
                    WHEN s.last_count + coalesce(m.at_last, 0) > 0 THEN s.last_sale END
                   AS last_sale,
               CASE WHEN m.later IS NOT NULL THEN m.later_n
                    WHEN s.last_count + coalesce(m.at_last, 0) > 0
                        THEN s.last_count + coalesce(m.at_last, 0) END AS last_count
        FROM _state AS s FULL JOIN m ON s.month = m.month AND s.customer_id = m.customer_id)
    SELECT * FROM moved WHERE orders > 0"""
# A month's customer rows from its state, for the customers of ids {low} to {high}: names from
# the customer's latest version begun by their last sale (a customer's versions do not
# overlap: the one valid then, if any), membership from it only while valid then (null:
# deleted upstream).
CUSTOMER_MONTHLY = """
    SELECT s.month, s.customer_id, v.first_name, v.last_name,
           CASE WHEN s.last_sale < v.expiry_date THEN v.membership_status END
               AS membership_status,
           s.orders, s.total_quantity, round(s.spent, 2) AS total_spent
    FROM (FROM _state WHERE customer_id BETWEEN {low} AND {high}) AS s
    ASOF LEFT JOIN (FROM _versions WHERE customer_id BETWEEN {low} AND {high}) AS v
        ON v.customer_id = s.customer_id AND v.effective_from <= s.last_sale
    ORDER BY s.month, s.customer_id"""
# The customers of ids {low} to {high} with no version begun by their last sale.
WITHOUT_VERSION = """
    SELECT DISTINCT s.customer_id
    FROM (FROM _state WHERE customer_id BETWEEN {low} AND {high}) AS s
    ANTI JOIN (FROM _versions WHERE customer_id BETWEEN {low} AND {high}) AS v
        ON v.customer_id = s.customer_id AND v.effective_from <= s.last_sale"""
# customer_monthly (and the lookup of customers without a version) is made this many
# customers' rows at a time, in customer-id order: the ASOF join and sort of a 1000x month's
# 7.8 M customers at once took DuckDB to its memory cap, 1.2 GB above the rest of the marts'
# refresh.
CUSTOMERS_PER_QUERY = 1_000_000
PRODUCT_MONTHLY = """
    SELECT month, product_id, name, membership_status, sum(orders) AS orders,
           sum(total_quantity) AS total_quantity, round(sum(revenue), 2) AS revenue,
           round(sum(revenue) / sum(total_quantity), 2) AS avg_unit_price
    FROM _days GROUP BY ALL ORDER BY month, product_id, name, membership_status"""
SALE_COLUMNS = ["customer_id", "product_id", "quantity", "total_price", "sale_date"]
VERSION_COLUMNS = ["customer_id", "first_name", "last_name", "membership_status",
                   "effective_from", "expiry_date"]
MEMBER_COLUMNS = ["customer_id", "membership_status", "effective_from", "expiry_date"]
NAMES = ("first_name", "last_name", "membership_status")   # few values, many rows


def _month(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(month: dt.date) -> dt.date:
    return (month + dt.timedelta(days=32)).replace(day=1)


def _previous_month(month: dt.date) -> dt.date:
    return (month - dt.timedelta(days=1)).replace(day=1)


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    out, month = [], _month(first)
    while month <= last:
        out.append(month)
        month = _next_month(month)
    return out


def sales_months(layout: Layout) -> list[dt.date]:
    """Every month from the first sale's to the last's (any version)."""
    if not delta.exists(layout.table("sales")):
        return []
    dates = _sale_dates(layout, current=False)
    return months_between(dates[0], dates[-1]) if dates else []


def _sale_dates(layout: Layout, current: bool = True) -> list[dt.date]:
    """The dates with a (current) sale, from the sales table's partitions: no file read."""
    files = pa.table(delta.delta(layout.table("sales")).get_add_actions(flatten=True))
    if current:
        files = files.filter(pc.equal(pc.cast(files.column("partition.is_current"),
                                              pa.string()), "true"))
    dates = pc.cast(files.column("partition.sale_date"), pa.date32())
    return sorted(pc.unique(dates).to_pylist())




def refreshed_through(layout: Layout):
    """The ``finished_at`` of the last ingest-log row the marts reflect; None before the
    marts (and what they are kept from) exist."""
    import pandas as pd  # on first use: start-up stays light

    path = layout.marts_mark
    if not path.is_file() or not all(delta.exists(layout.mart(m))
                                     for m in (*MARTS, CUSTOMER_STATE, PRODUCT_DAYS)):
        return None
    return pd.Timestamp(json.loads(path.read_text(encoding="utf-8"))["log_finished_at"])


def _mark_refreshed(layout: Layout, through) -> None:
    storage.write_bytes(layout.marts_mark,
                        json.dumps({"log_finished_at": through.isoformat()}).encode("utf-8"))


def _state_through(layout: Layout):
    """The ``finished_at`` of the last ingest-log row the customer state reflects: its
    latest write's mark (a ``vacuum`` may have committed after it); None: unknown."""
    import pandas as pd  # on first use: start-up stays light

    path = layout.mart(CUSTOMER_STATE)
    if not delta.exists(path):
        return None
    for entry in delta.delta(path).history(limit=10):      # newest first
        if THROUGH in entry:
            mark = json.loads(entry[THROUGH])
            return None if mark is None else pd.Timestamp(mark)
    return None


@dataclass
class Pending:
    """What the files applied since a mark change: the dates of the sales files, and the
    earliest date of a customer or product file (a sale meets the versions of its date)."""
    sales_days: list[dt.date]
    from_day: dt.date | None

    def __bool__(self) -> bool:
        return bool(self.sales_days) or self.from_day is not None


def _logged_since(log_rows, since):
    """The ingest log's rows after ``since`` (None: every row) that may change the marts: not
    an erasure request's own row, logged after the erasure recomputed the marts in full and
    purged their history (erasure/requests), or that recompute would be made twice."""
    recent = log_rows if since is None else log_rows[log_rows["finished_at"] > since]
    return recent[recent["source"] != ERASURE_REQUESTS.name]


def pending(log_rows, since) -> Pending | None:
    """The files applied after ``since`` (None: every file); None when moving on will not do:
    files applied and no mark yet, a rebuild, a late or resent file (then
    :func:`repaired_months` says which months, or every month)."""
    recent = _logged_since(log_rows, since)
    if since is not None and (recent["event"] != "").any():
        return None         # a repair or a rebuild since (even of a file then quarantined)
    rows = recent[recent["status"] == "applied"]
    if not len(rows):
        return Pending([], None)
    if since is None or not rows["source"].isin(list(SOURCES)).all():
        return None
    others = rows.loc[rows["source"] != "sales", "file_date"]
    return Pending(sorted(set(rows.loc[rows["source"] == "sales", "file_date"])),
                   min(others) if len(others) else None)


REPAIRS = {"late", "resent", "replay"}      # the ingest log's events of a repair


def _since(layout: Layout):
    """The earlier of the marts' mark and the customer state's (None: either unknown)."""
    marks = [refreshed_through(layout), _state_through(layout)]
    return None if any(m is None for m in marks) else min(marks)


def repaired_months(lake: Lake, log_rows, since) -> list[dt.date] | None:
    """The months the files logged since ``since`` changed, when some of them were a repair (a
    late or resent file: docs/history.md) and none a rebuild or an erasure: every month from
    the earliest date a repair or a customer or product file starts at, the sale months of
    the versions in-order sales files opened or closed, and those of the sales versions from a
    sales repair's date on, in the table now and as it stood at ``since`` (a resent file's
    earlier content, or a repaired file then quarantined, leaves rows only there). None: no
    repair since, or only a full recompute will do."""
    if since is None:
        return None
    recent = _logged_since(log_rows, since)
    applied = recent["status"] == "applied"
    events = set(recent["event"]) - {""}
    if not events or not events <= REPAIRS or not recent.loc[applied, "source"].isin(
            list(SOURCES)).all():
        return None
    # a repair rolled back from its file's date whatever became of that file
    changed = applied | (recent["event"] != "")
    sales = recent["source"] == "sales"
    repaired = recent[sales & (recent["event"] != "")]
    starts = [*recent.loc[~sales & changed, "file_date"], *repaired["file_date"]]
    months = set()
    if starts:
        first = _month(min(starts))
        months |= {m for m in sales_months(lake.layout) if m >= first}
    in_order = sorted(set(recent.loc[sales & applied & (recent["event"] == ""), "file_date"]))
    if in_order:
        dates = _changed_sales(lake, in_order, ["sale_date"]).column("sale_date")
        months |= {_month(d) for d in pc.unique(dates).to_pylist()}
    if len(repaired):
        then = _as_it_stood(lake.table("sales"), since)
        if then is None:
            return None
        day = min(repaired["file_date"])
        where = [[("effective_from", ">=", day)],
                 [("expiry_date", ">=", day), ("is_current", "=", False)]]
        for table in (None, *then):
            dates = delta.read(lake.table("sales"), where, ["sale_date"], table=table
                               ).column("sale_date")
            months |= {_month(d) for d in pc.unique(dates).to_pylist()}
    return sorted(months)


def _as_it_stood(path: Path, since) -> list | None:
    """The table at its last version committed by ``since`` (what the marts reflect), as a
    one-item list; an empty one if it did not exist yet; None if that version is no longer
    kept (the history policy, an erasure)."""
    listed = delta.versions(path)
    then = listed.loc[listed["committed_at"] <= since, "version"]
    if not len(then):
        return [] if not len(listed) or int(listed["version"].min()) == 0 else None
    try:
        return [delta.delta(path, int(then.max()))]
    except DeltaError:
        return None


def touched_months(layout: Layout) -> list[dt.date] | None:
    """The months whose marts the files applied since their last refresh change (None: every
    month): the sale months of the sales versions a sales file opened or closed (a
    correction to an old sale is its old month), and for a customer or product file every
    month from its date on (a sale meets the versions valid on its date). Read from the
    ingest log, so a run killed before its marts were refreshed is caught up by the next."""
    log_rows = logs.read_log(layout)
    todo = pending(log_rows, refreshed_through(layout))
    if todo is not None and not todo:
        return []
    if Lake(layout).retyped:            # quantities kept in another type than the sales' now
        return None
    if todo is None:
        return repaired_months(Lake(layout), log_rows, _since(layout))
    changed = _changed_sales(Lake(layout), todo.sales_days, ["sale_date"])
    # a day's million sales fall on a few dates: Python sees only the distinct ones
    months = {d.replace(day=1) for d in pc.unique(changed.column("sale_date")).to_pylist()}
    if todo.from_day is not None:
        months |= {m for m in sales_months(layout) if m >= _month(todo.from_day)}
    return sorted(months)


def refresh(root: str | Path = ".", months: list[dt.date] | None = None) -> dict[str, int]:
    """Recompute the marts for ``months`` (all months with sales when None) in full from the
    tables; returns rows written per mart. What is pending in other months is brought up to
    date first. Afterwards the marts are marked as reflecting the ingest log as it stands."""
    layout = Layout.of(root)
    if months is not None:
        if refreshed_through(layout) is None:
            months = None               # no marts yet: every month, or later runs miss some
        else:
            update(layout.root)
    return _refresh(layout, months)[1]


def update(root: str | Path = ".") -> tuple[list[dt.date] | None, dict[str, int]]:
    """Bring the marts up to the ingest log: only the sale dates and months the files applied
    since the last refresh touched, the customers' sums moved on by the sales versions those
    files opened and closed (after a late or resent file, the months it changed in full; in
    full when a rebuild came since, or the marts are new; an erasure recomputed them in full
    itself). Returns the months recomputed (None: every month) and the rows written per
    mart."""
    layout = Layout.of(root)
    return _refresh(layout, None, incremental=True)


def _refresh(layout: Layout, months: list[dt.date] | None,
             incremental: bool = False) -> tuple[list[dt.date] | None, dict[str, int]]:
    log_rows = logs.read_log(layout)
    through = log_rows["finished_at"].max() if len(log_rows) else None
    if not all(delta.exists(layout.table(n)) for n in ("customer", "product", "sales")):
        return ([] if incremental else months), {}
    todo = pending(log_rows, refreshed_through(layout)) if incremental else None
    if todo is not None and not todo:
        return [], {}
    customers = log_rows.loc[(log_rows["status"] == "applied")
                             & (log_rows["source"] == "customer"), "file_date"]
    lake = Lake(layout, max(customers) if len(customers) else None)
    if lake.retyped:                    # quantities kept in another type than the sales' now
        todo = None                     # (widened since): every month in full
    # the files the customer state has not added yet (since the marts' mark, or fewer)
    kept = pending(log_rows, _state_through(layout)) if todo is not None else None
    if kept is None:
        todo = None                     # in full (the customer state too)
    # a repair since: only the months it (and the files beside it) changed, in full
    repaired = (repaired_months(lake, log_rows, _since(layout))
                if incremental and todo is None and not lake.retyped else None)
    with duck.connected() as con:
        if todo is not None:
            months, written = _moved_on(lake, con, todo, kept.sales_days, through)
        elif repaired is not None:
            # a month a repair emptied (a sale moved back out of it) is written empty
            written = _in_full(lake, con, repaired, through, repair=True) if repaired else {}
            months = repaired
        else:
            every = sales_months(layout)
            touched = sorted(set(every if months is None or lake.retyped else months)
                             & set(every))
            written = _in_full(lake, con, touched, through) if touched else {}
            months = None if incremental or lake.retyped else months
    # the marts and what they are kept from exist (or a repair changed no month)
    if through is not None and (todo is not None or written or repaired is not None):
        _mark_refreshed(layout, through)
    return months, written


class Lake:
    """A root's layout, and its source tables each opened once for one refresh; every read
    picks its files by its filters from the Delta log (partition values, column statistics)
    before any is set up (``delta.read``), so a day's refresh does not grow with the
    tables' file counts. ``customers_through``: the date of the last customer file applied
    (None: unknown)."""

    def __init__(self, layout: Layout, customers_through: dt.date | None = None):
        self.layout = layout
        self.customers_through = customers_through
        self._opened: dict[str, delta.Opened] = {}

    def table(self, name: str) -> Path:
        return self.layout.table(name)

    def read(self, name: str, filters: list, columns: list[str] | None = None,
             also: pc.Expression | None = None) -> pa.Table:
        opened = self._opened.setdefault(name, delta.Opened(self.layout.table(name)))
        return delta.read(opened.path, filters, columns, also, table=opened.snapshot())

    @functools.cached_property
    def schemas(self) -> dict[str, pa.Schema]:
        """The marts' and kept tables' schemas for the sales' ``quantity`` type."""
        opened = self._opened.setdefault("sales", delta.Opened(self.table("sales")))
        sales = pa.schema(opened.snapshot().schema().to_arrow())   # the snapshot read
        return schemas(sales.field("quantity").type)

    @functools.cached_property
    def retyped(self) -> bool:
        """Whether a mart or kept table holds its quantities in another type than
        :attr:`schemas` (made before the sales' quantity widened, by the file that did, which
        the marts then have to catch up with): then every one is remade in full, each
        overwritten with its schema. As the tables stood when first asked (a refresh asks
        before it writes)."""
        if not delta.exists(self.table("sales")):
            return False
        for name, schema in SCHEMAS.items():
            path = self.layout.mart(name)
            if QUANTITY in schema.names and delta.exists(path):
                kept = pa.schema(delta.delta(path).schema().to_arrow()).field(QUANTITY).type
                if kept != self.schemas[name].field(QUANTITY).type:
                    return True
        return False


def _read(path: Path, schema: pa.Schema, months: list[dt.date], dates: pa.Array | None = None
          ) -> pa.Table:
    """A kept table's or mart's rows of ``months`` (bar those of ``dates``)."""
    rows = delta.read(path, [("month", "in", months)],
                       also=None if dates is None else ~pc.field("sale_date").isin(dates))
    return rows.select(schema.names).cast(schema)


def _day(value: dt.date) -> pa.Scalar:
    return pa.scalar(value, pa.date32())


def _within(first: dt.date, end: dt.date) -> list[tuple]:
    """The filters of the versions valid at some moment of [first, end)."""
    return [("effective_from", "<", end), ("expiry_date", ">", first)]


def _versions(lake: Lake, name: str, first: dt.date, end: dt.date,
              columns: list[str] | None = None) -> pa.Table:
    """A table's versions valid at some moment of [first, end)."""
    columns = columns or (VERSION_COLUMNS if name == "customer" else [
        "product_id", "name", "effective_from", "expiry_date"])
    return lake.read(name, _within(first, end), columns)


def _by_date(con, schemas: dict[str, pa.Schema], sales: pa.Table, customers: pa.Table,
             products: pa.Table) -> dict[str, pa.Table]:
    """The per-date rows (product days, daily sales) of the current sales given, with the
    customer and product versions valid at some moment of their dates."""
    if not len(sales):
        return {n: schemas[n].empty_table() for n in BY_DATE}
    con.register("_sales", sales)
    con.register("_versions", customers)
    con.register("_products", products)
    con.execute(JOINED)
    for name in ("_sales", "_versions", "_products"):
        con.unregister(name)
    out = {n: con.sql(q).to_arrow_table().cast(schemas[n]) for n, q in BY_DATE.items()}
    con.execute("DROP TABLE j")
    return out


def _customer_versions(lake: Lake, con, state: pa.Table, versions: pa.Table,
                       first: dt.date, slices: list[tuple[int, int]]) -> pa.Table:
    """The customer versions the state's rows take their names and membership from: those
    valid at some moment of its months (``versions``, from ``first`` on), and, for a
    customer with none begun by their last sale (none valid on ``first``: deleted upstream
    before, perhaps back later), their latest earlier version."""
    if not len(state):
        return versions
    con.register("_state", state)
    con.register("_versions", versions)
    missing = _by_slices(con, WITHOUT_VERSION, slices).column(0)
    con.unregister("_versions")
    if len(missing):
        earlier = _gone(lake, con, first, missing.combine_chunks())
        versions = pa.concat_tables([versions, earlier.cast(versions.schema)])
    return versions


def _gone(lake: Lake, con, first: dt.date, wanted: pa.Array) -> pa.Table:
    """Of the customers ``wanted``, those with no version valid on ``first`` (a month's first
    day), each with their latest version closed by then. Every such customer of the month is
    kept in ``_gone_customers`` once made (:func:`_made_gone`), since reading the customer
    history every day grew a daily refresh with it; and only the rows wanted are taken from
    there, their names as dictionary arrays until then: a month of three years of a lake holds
    everyone who ever left (2 M rows at 10x), of whom a day wants a few thousand, and reading
    every name as text took 0.3 s and 190 MB.

    What is kept cannot go stale: only versions opened or closed on or before ``first`` count,
    and it is kept only once the customer files have reached ``first`` (a file after them in
    order is dated later; a late or resent one recomputes the months it changed in full,
    which drops what was kept of them). A month made holds a row without a customer, so that a
    month with no such customer is not made again. Making a month drops the months before the
    one before it (what the next month is made from): each month holds everyone gone."""
    path = lake.layout.mart(GONE)
    ids = pc.field("customer_id")
    kept = _kept_gone(path, first, ids.is_null() | ids.isin(wanted))
    if kept is not None:
        return kept
    made = _made_gone(lake, con, first)
    if lake.customers_through is not None and lake.customers_through >= first:
        rows = made.add_column(0, "month", pa.repeat(_day(first), len(made)))
        marked = pa.concat_tables([rows.cast(SCHEMAS[GONE]), pa.Table.from_pylist(
            [{"month": first}], SCHEMAS[GONE])])
        _replace_months(path, marked, [first], dropping_before=_previous_month(first))
        crashpoint("marts.gone")
    return made.filter(pc.is_in(made.column("customer_id"), value_set=wanted))


def _kept_gone(path: Path, month: dt.date, also: pc.Expression | None = None
               ) -> pa.Table | None:
    """The customers kept as gone for ``month`` (those matching ``also``), None when the month
    was not made (no marker row)."""
    if not delta.exists(path):
        return None
    marker = pc.field("customer_id").is_null()
    kept = delta.read(path, [("month", "=", month)], VERSION_COLUMNS,
                      also=None if also is None else also | marker, dictionary=NAMES)
    if not len(kept):
        return None
    return kept.filter(pc.is_valid(kept.column("customer_id")))


def _made_gone(lake: Lake, con, first: dt.date) -> pa.Table:
    """Every customer with no version valid on ``first``, with their latest version closed by
    then, in customer order: from those of the month before, when kept, and the versions that
    closed during it (a month's changes: the history before that month is what made those);
    else from every closed version (at 10x after three years, 8 M of them and 1.5 GB: once
    after an erasure, or the first time)."""
    before = _previous_month(first)
    valid = lake.read("customer", [("effective_from", "<=", first), ("expiry_date", ">", first)],
                      ["customer_id"]).column("customer_id")
    still = ~pc.field("customer_id").isin(pc.unique(valid))
    earlier = _kept_gone(lake.layout.mart(GONE), before)
    if earlier is not None:
        closed = pa.concat_tables([
            earlier.filter(still),
            lake.read("customer", [("expiry_date", ">", before), ("expiry_date", "<=", first)],
                      VERSION_COLUMNS, also=still).cast(earlier.schema)])
    else:
        closed = lake.read("customer", [("expiry_date", "<=", first)], VERSION_COLUMNS,
                           also=still)
    con.register("_closed", closed)
    made = con.sql("""SELECT * FROM _closed QUALIFY row_number() OVER (
        PARTITION BY customer_id ORDER BY effective_from DESC, expiry_date DESC) = 1
        ORDER BY customer_id""").to_arrow_table().cast(closed.schema)
    con.unregister("_closed")
    return made


def _made_marts(lake: Lake, con, months: list[dt.date], state: pa.Table,
                days: pa.Table, daily: pa.Table, customers: pa.Table) -> dict[str, pa.Table]:
    """The three marts' rows of ``months`` from the customer state and the per-date rows of
    those months (``customers``: the versions valid in them)."""
    slices = _slices(state)
    versions = _customer_versions(lake, con, state, customers, months[0], slices)
    con.register("_state", state)
    con.register("_versions", versions)
    con.register("_days", days)
    made = {"customer_monthly": _by_slices(con, CUSTOMER_MONTHLY, slices),
            "product_monthly": con.sql(PRODUCT_MONTHLY).to_arrow_table(),
            "daily_sales": daily.sort_by([("sale_date", "ascending"),
                                          ("membership_status", "ascending")])}
    made = {name: rows.cast(lake.schemas[name]) for name, rows in made.items()}
    for name in ("_state", "_versions", "_days"):
        con.unregister(name)
    return made


def _write_marts(lake: Lake, months: list[dt.date] | None, made: dict[str, pa.Table]
                 ) -> dict[str, int]:
    """The marts' partitions of ``months`` (None: the whole tables) replaced by ``made``, a
    commit each. The callers let go of what the rows were made of first: at 1000x the
    customer versions and state are as large as the rows written."""
    written = {}
    for name in MARTS:
        _replace_months(lake.layout.mart(name), made[name], months)
        crashpoint("marts.written")
        written[name] = made[name].num_rows
    return written


def _slices(state: pa.Table) -> list[tuple[int, int]]:
    """The state's customer ids cut into ranges of about ``CUSTOMERS_PER_QUERY`` rows each
    (every row of a customer in one range), in order: (lowest, highest) id of each."""
    low, high = pc.min_max(state.column("customer_id")).values()
    if low.as_py() is None:
        return [(0, -1)]
    slices = -(-state.num_rows // CUSTOMERS_PER_QUERY)
    cuts = [] if slices == 1 else pc.quantile(
        state.column("customer_id"), q=[i / slices for i in range(1, slices)],
        interpolation="lower").to_pylist()
    starts = sorted({low.as_py(), *cuts})
    ends = [start - 1 for start in starts[1:]] + [high.as_py()]
    return list(zip(starts, ends, strict=True))


def _by_slices(con, query: str, slices: list[tuple[int, int]]) -> pa.Table:
    """A query of the customers of ids {low} to {high} run a slice at a time, the rows of
    the slices in order."""
    return pa.concat_tables([con.sql(query.format(low=low, high=high)).to_arrow_table()
                             for low, high in slices])


def _in_full(lake: Lake, con, months: list[dt.date], through, repair: bool = False
             ) -> dict[str, int]:
    """The months recomputed from every current sale in them, one sale date at a time (a
    date's sales in memory at once, not the months'): the per-date rows, and the customers'
    sums moved on date after date. The gone customers kept are made again: a ``repair``'s
    from its first month on (the customer history before its date is as it was), any other
    recompute's all of them."""
    wanted = set(months)
    first, end = months[0], _next_month(months[-1])
    if delta.exists(lake.layout.mart(GONE)):
        delta.write(lake.layout.mart(GONE), SCHEMAS[GONE].empty_table(),
                     partition_by=["month"], mode="overwrite",
                     **({"predicate": f"month >= '{first.isoformat()}'"} if repair else {}))
    # Each date's sales meet the customers' membership only; their names are read after the
    # dates (at 1000x, 0.2 GB less beside a date's sales and DuckDB's joins).
    members = _versions(lake, "customer", first, end, MEMBER_COLUMNS)
    products = _versions(lake, "product", first, end)
    state, days, daily = lake.schemas[CUSTOMER_STATE].empty_table(), [], []
    finished = []                       # the state's rows of the months before the date's
    month = members_then = None
    for date in (d for d in _sale_dates(lake) if _month(d) in wanted):
        if _month(date) != month:       # a date's sales meet only its month's versions
            month = _month(date)
            members_then = _valid_within(members, month, _next_month(month))
            # and move on only its month's customer rows: the months before are done (at
            # 10x after three years, 1.8 M rows joined to each date's sales, not 50,000)
            finished.append(state)
            state = lake.schemas[CUSTOMER_STATE].empty_table()
        sales = lake.read("sales", [("is_current", "=", True), ("sale_date", "=", date)],
                          SALE_COLUMNS)
        state = _with_state(lake, con, CUSTOMERS_THEN_A_LATER_DATE, state, _sales=sales)
        # and only the product versions valid on the date: every version of the months
        # recomputed meant, for a product repriced daily, each sale matched against every
        # day's price (at 10x after three years, 283 ms a date against 93 ms at day 200)
        per_date = _by_date(con, lake.schemas, sales, members_then, _valid_within(
            products, date, date + dt.timedelta(days=1)))
        del sales                       # before the next date's are read
        days.append(per_date[PRODUCT_DAYS])
        daily.append(per_date["daily_sales"])
    del members
    state = pa.concat_tables([*finished, state])
    days = pa.concat_tables(days or [lake.schemas[PRODUCT_DAYS].empty_table()])
    daily = pa.concat_tables(daily or [lake.schemas["daily_sales"].empty_table()])
    # quantities of another type kept (a widening since): every month, so the whole tables
    replaced = None if lake.retyped else months
    _write_kept(lake, replaced, state, days, through)
    customers = _versions(lake, "customer", first, end)
    made = _made_marts(lake, con, months, state, days, daily, customers)
    del state, days, daily, customers, products
    return _write_marts(lake, replaced, made)


def _valid_within(versions: pa.Table, first: dt.date, end: dt.date) -> pa.Table:
    """Of ``versions`` (in memory), those valid at some moment of [first, end) (the filters
    :func:`_versions` reads a table with). A recompute in full joins each date's sales
    with its month's versions only, not with every version of the months recomputed (an
    erasure's: all of them; at 10x after three years, 7.96 million versions against ~260,000,
    220-320 ms a date against 170-300 ms)."""
    return versions.filter(pq.filters_to_expression(_within(first, end)))


def _month_versions(lake: Lake, months: list[dt.date]) -> tuple[pa.Table, pa.Table]:
    """The customer and product versions valid at some moment of ``months``: read once per
    daily refresh, for the per-date rows and the customer rows alike."""
    first, end = months[0], _next_month(months[-1])
    return _versions(lake, "customer", first, end), _versions(lake, "product", first, end)


def _with_state(lake: Lake, con, query: str, state: pa.Table, **rows: pa.Table) -> pa.Table:
    """The customer state's rows moved on by ``query`` over ``state`` and ``rows`` (by the
    names the query reads them by)."""
    tables_in = {"_state": state, **rows}
    for name, table in tables_in.items():
        con.register(name, table)
    moved = con.sql(query).to_arrow_table().cast(lake.schemas[CUSTOMER_STATE])
    for name in tables_in:
        con.unregister(name)
    return moved


def _write_kept(lake: Lake, months: list[dt.date] | None, state: pa.Table, days: pa.Table,
                through) -> None:
    """The kept tables' partitions of ``months`` (None: the whole tables) replaced, a commit
    each, the customer state's carrying ``through``."""
    from deltalake import CommitProperties  # on first use: start-up stays light

    mark = {THROUGH: json.dumps(None if through is None else through.isoformat())}
    _replace_months(lake.layout.mart(CUSTOMER_STATE), state, months,
                    commit_properties=CommitProperties(custom_metadata=mark))
    crashpoint("marts.kept")
    _replace_months(lake.layout.mart(PRODUCT_DAYS), days, months)
    crashpoint("marts.kept")


def _changed_sales(lake: Lake, days: list[dt.date], columns: list[str] | None = None
                   ) -> pa.Table:
    """The sales versions the files of ``days`` opened or closed (typed, even if none)."""
    return lake.read("sales", [[("effective_from", "in", days)], [("expiry_date", "in", days)]],
                     columns or [*SALE_COLUMNS, "effective_from", "expiry_date", "is_current"])


def _moved_on(lake: Lake, con, todo: Pending, state_days: list[dt.date],
              through) -> tuple[list[dt.date], dict[str, int]]:
    """The marts moved on by what the files applied since the last refresh changed: the
    per-date rows of the sale dates they touched recomputed, the customers' sums moved on
    by the sales files of ``state_days`` (those the customer state has not added yet)."""
    changed = _changed_sales(lake, todo.sales_days)
    dates = set(pc.unique(changed.column("sale_date")).to_pylist())
    current = ("is_current", "=", True)
    wanted = [[current, ("sale_date", "in", sorted(dates))]]
    if todo.from_day is not None:
        wanted.append([current, ("sale_date", ">=", todo.from_day)])
    sales = lake.read("sales", wanted, SALE_COLUMNS)
    dates |= set(pc.unique(sales.column("sale_date")).to_pylist())
    months = sorted({d.replace(day=1) for d in dates})
    if not months:
        return [], {}
    customers, products = _month_versions(lake, months)
    per_date = _by_date(con, lake.schemas, sales, customers, products)
    del sales
    state = _moved_on_state(lake, con, changed, months, state_days)
    # the months' rows of the dates not recomputed, and the recomputed ones
    on, mart = pa.array(sorted(dates), pa.date32()), lake.layout.mart
    days = pa.concat_tables([_read(mart(PRODUCT_DAYS), lake.schemas[PRODUCT_DAYS], months, on),
                             per_date[PRODUCT_DAYS]])
    daily = pa.concat_tables([_read(mart("daily_sales"), lake.schemas["daily_sales"], months,
                                    on), per_date["daily_sales"]])
    _write_kept(lake, months, state, days, through)
    made = _made_marts(lake, con, months, state, days, daily, customers)
    del state, days, daily, customers, products, per_date, changed
    return months, _write_marts(lake, months, made)


def _moved_on_state(lake: Lake, con, changed: pa.Table, months: list[dt.date],
                    state_days: list[dt.date]) -> pa.Table:
    """The customer state of ``months`` moved on by the sales versions opened and closed by
    the files of ``state_days``, applied after the state's own mark (none when it is there
    already: a run killed after writing it)."""
    days = pa.array(state_days, pa.date32())
    opened = pc.field("effective_from").isin(days)
    delta = changed.filter((opened & pc.field("is_current"))
                           | (pc.field("expiry_date").isin(days) & ~opened))
    sign = pc.if_else(pc.is_in(delta.column("effective_from"), value_set=days), 1, -1)
    delta = delta.select(SALE_COLUMNS).append_column("sign", pc.cast(sign, pa.int64()))
    state = _read(lake.layout.mart(CUSTOMER_STATE), lake.schemas[CUSTOMER_STATE], months)
    moved = _with_state(lake, con, CUSTOMERS_MOVED_ON, state, _delta=delta)
    unknown = pc.is_null(moved.column("last_sale"))
    if pc.any(unknown).as_py():
        moved = _last_sales_again(lake, con, moved, unknown)
    return moved


def _last_sales_again(lake: Lake, con, moved: pa.Table, unknown) -> pa.Table:
    """The rows whose last sale was closed with every other sale of its date: read from
    those customers' current sales of the month."""
    lost = moved.filter(unknown)
    in_months = [[("is_current", "=", True), ("sale_date", ">=", m),
                  ("sale_date", "<", _next_month(m))]
                 for m in sorted(set(lost.column("month").to_pylist()))]
    sales = lake.read("sales", in_months, SALE_COLUMNS,
                      also=pc.field("customer_id").isin(pc.unique(lost.column("customer_id"))))
    con.register("_sales", sales)
    again = con.sql(CUSTOMERS_IN_FULL).to_arrow_table().cast(lake.schemas[CUSTOMER_STATE])
    con.unregister("_sales")
    con.register("_lost", lost)
    con.register("_again", again)
    found = con.sql("SELECT l.month, l.customer_id, l.orders, l.total_quantity, l.spent, "
                    "a.last_sale, a.last_count FROM _lost AS l JOIN _again AS a "
                    "USING (month, customer_id)").to_arrow_table().cast(
                        lake.schemas[CUSTOMER_STATE])
    con.unregister("_lost")
    con.unregister("_again")
    return pa.concat_tables([moved.filter(pc.invert(unknown)), found])


def _replace_months(path: Path, rows: pa.Table, months: list[dt.date] | None,
                    dropping_before: dt.date | None = None, **kwargs) -> None:
    """One commit: the months' partitions replaced by ``rows`` (the other months kept, but
    those before ``dropping_before``, if given); None: the whole table, with the rows' schema
    (a quantity's type changed: :func:`schemas`)."""
    if not delta.exists(path):          # a commit a day: checkpoints keep opening it quick
        delta.write(path, rows, partition_by=["month"], mode="overwrite", configuration={
            "delta.checkpointInterval": str(delta.CHECKPOINT_EVERY)}, **kwargs)
        return
    if months is None:
        delta.write(path, rows, partition_by=["month"], mode="overwrite",
                    schema_mode="overwrite", **kwargs)
        return
    listed = ", ".join(f"'{m.isoformat()}'" for m in months)
    dropped = f" OR month < '{dropping_before.isoformat()}'" if dropping_before else ""
    delta.write(path, rows, partition_by=["month"], mode="overwrite",
                 predicate=f"month IN ({listed}){dropped}", **kwargs)


def marts(root: str | Path = ".", months: list[dt.date] | None = None) -> dict[str, int]:
    """Recompute the marts (every month, or ``months``) holding the root's lock
    (``python -m minilake marts``); rows written per mart."""

    layout = Layout.of(root)
    with hold(layout.root, "marts"):
        return refresh(layout.root, months)


def catch_up(root: str | Path = ".") -> tuple[list[dt.date] | None, dict[str, int]]:
    """``update`` holding the root's lock: what ``run`` and the scheduler's ``refresh_marts``
    do after the files are applied."""

    layout = Layout.of(root)
    with hold(layout.root, "marts"):
        return update(layout.root)


def read_mart(name: str, root: str | Path = ".") -> pa.Table:
    if name not in MARTS:
        raise ValueError(f"no mart {name!r}; marts: {', '.join(MARTS)}")
    path = Layout.of(root).mart(name)
    if not delta.exists(path):
        raise FileNotFoundError(f"no mart {name!r} yet under {path.parent} (run, or marts)")
    return delta.dataset(path).to_table()
