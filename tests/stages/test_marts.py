"""Data marts and SQL (issue 16, README, Marts and SQL): every column of the marts against what is
computed
here from the raw files, incremental refresh by month, and read-only SQL at any point in
time."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake
from support import rawfiles as raw
from support.commands import minilake as cli

import minilake
from minilake.generate import generate
from minilake.lake import duck
from minilake.lake.layout import MARTS, Layout
from minilake.outbound import marts, reports


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Eight days across a month end (October and November)."""
    root = tmp_path_factory.mktemp("marts_world")
    generate(root, start="2024-10-27", days=8, customers=300, seed=21, landing_only=True)
    return root


@pytest.fixture(scope="module")
def lake(world, tmp_path_factory) -> Path:
    """Every day but the last applied, then the last (a November day), then a resent October
    sales file correcting one sale."""
    root = tmp_path_factory.mktemp("marts_lake") / "root"
    shutil.copytree(world / "landing_zone", root / "held")
    (root / "landing_zone").mkdir()
    days = sorted({raw.file_date(p) for p in (root / "held").iterdir()})
    for path in (root / "held").iterdir():
        if raw.file_date(path) != days[-1]:
            shutil.move(path, root / "landing_zone" / path.name)
    assert minilake.run(root).ok
    return root


def oracle(archive: Path) -> dict[str, pd.DataFrame]:
    """Every column of the marts computed from the archived raw files alone, with plain pandas
    and Decimal: every sale as last sent, meeting the customer and product rows of the latest
    snapshot dated on or before its date (the versions valid then)."""
    sales = raw.final_sales(archive / "sales")
    # each snapshot as {key: row}, by date
    snapshots = {raw.file_date(p): raw.customers(p).set_index("customer_id").to_dict("index")
                 for p in raw.days(archive / "customer", "customer")}
    catalogues = {raw.file_date(p): raw.products(p).set_index("product_id").to_dict("index")
                  for p in raw.days(archive / "product", "products")}

    def as_of(snaps: dict, day, key, column):
        dated = [d for d in snaps if d <= day]
        if not dated:
            return None
        row = snaps[max(dated)].get(key)
        return None if row is None else row[column]

    rows = []
    for sale in sales.itertuples():
        day = pd.Timestamp(sale.sale_date).date()
        rows.append({"month": day.replace(day=1), "sale_date": day, "sale_id": sale.sale_id,
                     "customer_id": int(sale.customer_id), "product_id": sale.product_id,
                     "quantity": int(sale.quantity), "money": Decimal(sale.total_price),
                     "membership_status": as_of(snapshots, day, sale.customer_id,
                                                "membership_status"),
                     "name": as_of(catalogues, day, sale.product_id, "name")})
    frame = pd.DataFrame(rows)
    frame["membership_status"] = frame["membership_status"].fillna("(none)")
    frame["name"] = frame["name"].fillna("(none)")          # a product not sold yet that day

    def cents(values) -> float:
        return float(sum(values, Decimal(0)).quantize(Decimal("0.01"), ROUND_HALF_EVEN))

    last = last_sale_names(frame, snapshots)
    customer = frame.groupby(["month", "customer_id"]).agg(
        orders=("sale_id", "count"), total_quantity=("quantity", "sum"),
        total_spent=("money", cents)).reset_index().merge(
        last[["month", "customer_id", "first_name", "last_name", "membership_status"]],
        on=["month", "customer_id"], how="left", validate="one_to_one")
    product = frame.groupby(["month", "product_id", "name", "membership_status"]).agg(
        orders=("sale_id", "count"), total_quantity=("quantity", "sum"),
        revenue=("money", cents), money=("money", "sum")).reset_index()
    # revenue ÷ quantity, exactly: the mart's is this to the nearest cent
    product["avg_unit_price"] = [m / q for m, q in zip(product["money"],
                                                       product["total_quantity"], strict=True)]
    daily = frame.groupby(["sale_date", "membership_status"]).agg(
        orders=("sale_id", "count"), revenue=("money", cents),
        customers=("customer_id", "nunique")).reset_index()
    daily["month"] = daily["sale_date"].map(lambda d: d.replace(day=1))
    return {"customer_monthly": customer, "product_monthly": product.drop(columns="money"),
            "daily_sales": daily, "sales": frame, "last_sales": last}


def last_sale_names(sales: pd.DataFrame, snapshots: dict) -> pd.DataFrame:
    """Per month and customer: the last sale's date, how many sales it holds, and the name and
    membership of the latest snapshot row dated on or before it (membership only from the
    snapshot of that date's view, none if the customer was not in it)."""
    rows = []
    for (month, customer), sold in sales.groupby(["month", "customer_id"]):
        last = sold["sale_date"].max()
        dated = sorted(d for d in snapshots if d <= last)
        seen = [snapshots[d][str(customer)] for d in dated if str(customer) in snapshots[d]]
        current = snapshots[dated[-1]].get(str(customer)) if dated else None
        member = None if current is None else current["membership_status"]
        rows.append({"month": month, "customer_id": customer, "last_sale": last,
                     "last_count": int((sold["sale_date"] == last).sum()),
                     "first_name": seen[-1]["first_name"] if seen else None,
                     "last_name": seen[-1]["last_name"] if seen else None,
                     "membership_status": member or "(none)"})
    return pd.DataFrame(rows)


def mart(root: Path, name: str) -> pd.DataFrame:
    frame = minilake.read_mart(name, root).to_pandas()
    for column in ("membership_status", "name"):
        if column in frame:
            frame[column] = frame[column].fillna("(none)")
    return frame


def compare(got: pd.DataFrame, want: pd.DataFrame, keys: list[str], columns: list[str]):
    got = got.sort_values(keys).reset_index(drop=True)[keys + columns]
    want = want.sort_values(keys).reset_index(drop=True)[keys + columns]
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_exact=True)


KEYS = {"customer_monthly": ["month", "customer_id"],
        "product_monthly": ["month", "product_id", "name", "membership_status"],
        "daily_sales": ["sale_date", "membership_status"]}


def check_against_raw(root: Path, deleted: bool = True) -> dict[str, pd.DataFrame]:
    """Every column of every mart equals the raw files' (``deleted``: some sale has no
    customer version valid on its date). Returns what the raw files give (:func:`oracle`)."""
    want = oracle(root / "archive")
    assert (want["sales"]["membership_status"] == "(none)").any() or not deleted
    for name, keys in KEYS.items():
        got = mart(root, name)
        assert set(got.columns) == set(want[name].columns), name    # each column checked
        exact = [c for c in got.columns if c not in keys and c != "avg_unit_price"]
        compare(got, want[name], keys, exact)
    # avg_unit_price: the exact revenue ÷ quantity to the nearest cent (either one on a tie)
    keys = KEYS["product_monthly"]
    got = mart(root, "product_monthly").sort_values(keys).reset_index(drop=True)
    exact = want["product_monthly"].sort_values(keys).reset_index(drop=True)["avg_unit_price"]
    off = [f"{row.month} {row.product_id} {row.membership_status}: {row.avg_unit_price}, "
           f"exactly {e:.4f}" for row, e in zip(got.itertuples(), exact, strict=True)
           if abs(Decimal(repr(row.avg_unit_price)) - e) > Decimal("0.005")
           or round(row.avg_unit_price, 2) != row.avg_unit_price]
    assert not off, "avg_unit_price is not revenue ÷ quantity:\n" + "\n".join(off[:5])
    return want


def assert_equal_to_a_full_recompute(root: Path, copy: Path) -> None:
    """The root's marts equal those ``python -m minilake marts`` makes on a copy of it."""
    shutil.copytree(root, copy)
    minilake.marts(copy)
    for name in MARTS:
        keys = list(mart(root, name).columns[:4])
        pd.testing.assert_frame_equal(
            mart(copy, name).sort_values(keys).reset_index(drop=True),
            mart(root, name).sort_values(keys).reset_index(drop=True), obj=name)
    shutil.rmtree(copy)


def adds_and_removes(path: Path) -> list[str]:
    """The file paths the table's latest commit added or removed."""
    log = sorted((path / "_delta_log").glob("*.json"))[-1]
    actions = [json.loads(line) for line in log.read_text().splitlines()]
    return [a[k]["path"] for a in actions for k in ("add", "remove") if k in a]


def test_marts_equal_sums_from_the_raw_files_and_refresh_one_month(lake, tmp_path):
    check_against_raw(lake)
    # the last day (November) arrives: only November's partitions are rewritten
    for path in (lake / "held").iterdir():
        shutil.move(path, lake / "landing_zone" / path.name)
    result = minilake.run(lake)
    assert result.ok and [m.isoformat() for m in result.months] == ["2024-11-01"]
    for name in ("customer_monthly", "product_monthly", "daily_sales"):
        touched = adds_and_removes(lake / "tables" / "marts" / name)
        assert touched and all(p.startswith("month=2024-11-01/") for p in touched), touched
    check_against_raw(lake)
    # and equal a full rebuild
    before = {n: mart(lake, n) for n in ("customer_monthly", "product_monthly", "daily_sales")}
    copy = tmp_path / "copy"
    shutil.copytree(lake, copy)
    minilake.marts(copy)
    for name, frame in before.items():
        keys = list(frame.columns[:4])
        pd.testing.assert_frame_equal(mart(copy, name).sort_values(keys).reset_index(drop=True),
                                      frame.sort_values(keys).reset_index(drop=True), obj=name)


def test_a_resent_correction_to_an_old_month_recomputes_it(lake, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(lake, root)
    october = sorted((root / "archive" / "sales").glob("sales_202410*.txt"))[-1]
    lines = october.read_bytes().split(b"\r\n")
    fields = lines[0].split(b"~")
    fields[3] = b"5"                                            # quantity 5
    fields[5] = f"{5 * float(fields[4]):.2f}".encode()          # and its total
    lines[0] = b"~".join(fields)
    (root / "landing_zone" / october.name).write_bytes(b"\r\n".join(lines))
    assert minilake.run(root).ok
    check_against_raw(root)


def test_sql_at_a_point_in_time_equals_read_table(lake):
    for day in ("2024-10-27", "2024-10-31", "2024-11-02"):
        got = minilake.sql(f"SELECT * FROM customer_as_of('{day}') ORDER BY customer_id, "
                           f"effective_from", lake)
        want = minilake.read_table("customer", as_of=day, root=lake)
        assert len(got) == len(want) > 0
        assert list(got["customer_id"]) == list(want["customer_id"])
        assert list(got["row_hash"]) == list(want["row_hash"])
    current = minilake.sql("SELECT count(*) AS n FROM sales_current", lake)["n"].iloc[0]
    assert current == minilake.read_table("sales", root=lake)["is_current"].sum()


@pytest.mark.parametrize("statement", [
    "DELETE FROM sales", "INSERT INTO sales SELECT * FROM sales", "CREATE TABLE x AS SELECT 1",
    "COPY (SELECT * FROM sales) TO 'out.csv'", "ATTACH 'other.db'",
    "SELECT 1; DELETE FROM sales", "DROP VIEW sales"])
def test_sql_refuses_anything_that_writes(lake, statement):
    before = minilake.versions("sales", lake)["version"].tolist()
    done = cli("sql", statement, "--root", str(lake))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "read-only" in done.stderr or "one statement" in done.stderr
    assert minilake.versions("sales", lake)["version"].tolist() == before
    assert not (lake / "out.csv").exists() and not (lake / "other.db").exists()


def move_sale(landing_file: Path, sale: pd.Series, to: dt.date) -> None:
    """Append to a sales file the sale resent with another date (an upsert by sale_id)."""
    fields = [sale.sale_id, str(sale.customer_id), sale.product_id, str(sale.quantity),
              f"{sale.price_per_unit:.2f}", f"{sale.total_price:.2f}", to.isoformat()]
    with landing_file.open("ab") as out:
        out.write(("~".join(fields) + "\r\n").encode())


def test_day_by_day_the_marts_move_on_and_equal_the_raw_files(world, tmp_path):
    """Each run moves the marts on from what its files changed: the customers' sums and last
    sales, the per-date rows of the sale dates it touched. After every day: the kept customer
    state equals the raw files' (sums, last sale date, its number of sales), the marts equal
    the raw files (names and membership as of the last sale too) and a full recompute. Two
    corrections on the way move a customer's only sale of their last date to an earlier date
    of the month (that last date is lost: read again) and a sale into the month before."""
    root = tmp_path / "root"
    shutil.copytree(world / "landing_zone", root / "held")
    (root / "landing_zone").mkdir()
    days = sorted({raw.file_date(p) for p in (root / "held").iterdir()})
    moved = {"earlier": 0, "month before": 0}
    for n, day in enumerate(days):
        for path in list((root / "held").iterdir()):
            if raw.file_date(path) == day:
                shutil.move(path, root / "landing_zone" / path.name)
        if n >= 2:
            sales = minilake.read_table("sales", root=root)
            sales = sales[sales["is_current"]].copy()
            sales["sale_date"] = pd.to_datetime(sales["sale_date"]).dt.date
            sales["month"] = sales["sale_date"].map(lambda d: d.replace(day=1))
            month = sales[sales["month"] == sales["month"].max()]
            per = month.groupby(["customer_id", "sale_date"]).size().rename("n").reset_index()
            last = per.sort_values("sale_date").groupby("customer_id").tail(1)
            alone = last[(last["n"] == 1) & (last["sale_date"] > month["sale_date"].min())]
            target = root / "landing_zone" / f"sales_{day:%Y%m%d}.txt"
            if len(alone):            # a month's first day has no earlier date to move to
                sale = month.merge(alone[["customer_id", "sale_date"]]).iloc[0]
                move_sale(target, sale, month["sale_date"].min())
                month = month[month["sale_id"] != sale["sale_id"]]
                moved["earlier"] += 1
            if sales["month"].nunique() > 1:            # one into the month before
                other = month.iloc[0]
                move_sale(target, other, other["month"] - dt.timedelta(days=1))
                moved["month before"] += 1
        result = minilake.run(root)
        assert result.ok and result.marts, day
        assert result.months is None if n == 0 else result.months, day
        want = check_against_raw(root, deleted=n == len(days) - 1)["last_sales"]
        state = DeltaTable(str(root / "tables" / "marts" / "_customer_state")).to_pandas()
        for column in ("month", "last_sale"):
            state[column] = pd.to_datetime(state[column]).dt.date
        compare(state, want, ["month", "customer_id"], ["last_sale", "last_count"])
        got = mart(root, "customer_monthly")
        compare(got, want, ["month", "customer_id"],
                ["first_name", "last_name", "membership_status"])
        assert_equal_to_a_full_recompute(root, tmp_path / f"full_{n}")
    assert min(moved.values()) >= 2, moved


def test_customers_gone_before_a_month_take_the_names_of_their_last_version(tmp_path):
    """Customers who left the snapshots before November and buy in November take, in their
    November rows, the names of their last version: one gone on 30 October, one on 1
    November, one gone on 30 October and back under another name on 3 November (after their
    November sale). The customer files of 1–2 November come late (with 3 November's): the
    lookup made on 2 November is not kept, as the customer history before November is not
    complete yet; the one made on 3 November is, and is read, not made again, on 4 November.
    After every day the marts equal the raw files' and a full recompute."""
    world = tmp_path / "world"
    generate(world, start="2024-10-27", days=9, customers=300, seed=21, landing_only=True)
    root = tmp_path / "root"
    held = world / "landing_zone"
    (root / "landing_zone").mkdir(parents=True)
    last = {c: raw.customers(held / f"customer_{d}.csv").set_index("customer_id").loc[c]
            for c, d in raw.gone_before_november(held).items()}
    november = dt.date(2024, 11, 1)
    kept = root / "tables" / "marts" / "_gone_customers"

    def kept_months() -> set:
        if not kept.exists():
            return set()
        return set(pd.to_datetime(DeltaTable(str(kept)).to_pandas()["month"]).dt.date)

    versions = {}
    for day in sorted({raw.file_date(p) for p in held.iterdir()}):
        customers_late = november <= day < dt.date(2024, 11, 3)
        for path in list(held.iterdir()):
            if raw.file_date(path) <= day and not (customers_late and "customer" in path.name):
                shutil.move(path, root / "landing_zone" / path.name)
        assert minilake.run(root).ok, day
        check_against_raw(root, deleted=False)      # names and membership too
        got = mart(root, "customer_monthly")
        if day == dt.date(2024, 11, 2):
            assert november not in kept_months()        # made, not kept: customers lag
        if day >= dt.date(2024, 11, 3):
            assert november in kept_months()
            versions[day] = DeltaTable(str(kept)).version()
        assert_equal_to_a_full_recompute(root, tmp_path / f"full_{day}")
    rows = got[got["month"] == november].set_index("customer_id")
    for customer, version in last.items():
        assert rows.loc[int(customer), "first_name"] == version["first_name"], customer
        assert rows.loc[int(customer), "last_name"] == version["last_name"], customer
        assert rows.loc[int(customer), "membership_status"] == "(none)"
    assert len(versions) == 2 and len(set(versions.values())) == 1, versions  # made, read


def test_customer_rows_made_a_few_customers_at_a_time_equal_the_raw_files(world, tmp_path,
                                                                          monkeypatch):
    """customer_monthly made seven customers at a time (a million at 1000x, where one query
    of a month took DuckDB to its memory cap), in full and then moved on by the last day:
    every customer once, with the sums, names and membership of the raw files."""
    monkeypatch.setattr(marts, "CUSTOMERS_PER_QUERY", 7)
    root = tmp_path / "root"
    shutil.copytree(world / "landing_zone", root / "held")
    (root / "landing_zone").mkdir()
    last = max(raw.file_date(p) for p in (root / "held").iterdir())
    for arriving in (lambda day: day < last, lambda day: day == last):
        for path in list((root / "held").iterdir()):
            if arriving(raw.file_date(path)):
                shutil.move(path, root / "landing_zone" / path.name)
        assert minilake.run(root).ok
        check_against_raw(root, deleted=False)      # names and membership too
        got = mart(root, "customer_monthly")
        assert got["month"].nunique() == 2 and len(got) > 20 * 7


def test_late_and_resent_files_recompute_only_the_months_from_their_date_on(world, tmp_path):
    """Late files (a day held back, then delivered after the next one: within October, across
    the month's end) and a resent October sales file whose earlier content had a correction
    moving a sale into September: each run repairs the tables from the late date on and
    recomputes the months from that date's on, and the month of any sale a repaired file
    corrected (September, and again once the resent content no longer moves the sale), never
    every month. After every run the marts and the customer state equal the raw files and a
    full recompute."""
    root = tmp_path / "root"
    held = world / "landing_zone"
    (root / "landing_zone").mkdir(parents=True)
    days = sorted({raw.file_date(p) for p in held.iterdir()})
    september, october, november = (dt.date(2024, m, 1) for m in (9, 10, 11))
    assert days[4] == dt.date(2024, 10, 31) and days[5] == november
    runs = [days[:2], [days[3]], [days[2]], [days[5]], [days[4]], days[6:]]
    for n, run in enumerate(runs):
        for day in run:
            for path in held.glob(f"*_{day:%Y%m%d}.*"):
                shutil.copy(path, root / "landing_zone" / path.name)
        if n == 4:                  # 31 October's sales, late, also move a sale into September
            sales = minilake.read_table("sales", as_of=days[3], root=root)
            move_sale(root / "landing_zone" / f"sales_{days[4]:%Y%m%d}.txt",
                      sales.iloc[0], dt.date(2024, 9, 30))
        result = minilake.run(root)
        assert result.ok and result.marts, run
        late = [d for d in run if d < max(days[:n + 1][-1:] + [d for r in runs[:n] for d in r])]
        if n:
            assert result.months is not None, f"{run}: every month recomputed"
        if late:
            assert {october} <= set(result.months), (run, result.months)
        if n == 4:
            assert {september, october, november} <= set(result.months), result.months
        check_against_raw(root, deleted=False)
        assert_equal_to_a_full_recompute(root, tmp_path / f"full_{n}")
    # 31 October resent without the correction: September is recomputed (no sale there now)
    original = held / f"sales_{days[4]:%Y%m%d}.txt"
    shutil.copy(original, root / "landing_zone" / original.name)
    result = minilake.run(root)
    assert result.ok and result.months is not None and september in result.months, \
        result.months
    check_against_raw(root, deleted=False)
    assert_equal_to_a_full_recompute(root, tmp_path / "full_resent")
    # the last day's sales resent unreadable: quarantined, yet its earlier content is gone from
    # the table (the repair rolled back from its date), and from the marts
    last = held / f"sales_{days[-1]:%Y%m%d}.txt"
    (root / "landing_zone" / last.name).write_bytes(b"000001~1~P1~\x00~1.00~1.00~x\r\n")
    result = minilake.run(root)
    assert [f.status for f in result.ingest.files if f.file == last.name] == [
        "quarantined", "superseded"], result.ingest.files
    assert result.months is not None and november in result.months, result.months
    check_against_raw(root, deleted=False)
    assert_equal_to_a_full_recompute(root, tmp_path / "full_quarantined")


def test_an_erasure_recomputes_the_marts_once_and_the_files_after_it_move_them_on(
        world, tmp_path, monkeypatch):
    """An erasure recomputes the marts in full itself (the names it erases are in any month)
    before its request is logged; the day's files applied after it in the same run then move
    the marts on like any day's files, not every month a second time, and a run with only an
    erasure request recomputes nothing more. After each run the marts equal the raw files as
    the erasure rewrote them and a full recompute, and hold the erased names nowhere."""
    root = tmp_path / "root"
    held = world / "landing_zone"
    (root / "landing_zone").mkdir(parents=True)
    days = sorted({raw.file_date(p) for p in held.iterdir()})
    for path in held.iterdir():
        if raw.file_date(path) < days[-1]:
            shutil.copy(path, root / "landing_zone" / path.name)
    assert minilake.run(root).ok
    recomputed = []
    in_full = marts._in_full

    def counted(lake, con, months, through):
        recomputed.append(list(months))
        return in_full(lake, con, months, through)

    monkeypatch.setattr(marts, "_in_full", counted)
    sold = minilake.read_table("sales", root=root)
    sold = sold.loc[sold["is_current"], "customer_id"].value_counts()
    # with the last day's files, then alone (dated the day after)
    runs = [(days[-1], list(held.glob(f"*_{days[-1]:%Y%m%d}.*"))),
            (days[-1] + dt.timedelta(days=1), [])]
    for n, ((stamp, files), erased) in enumerate(zip(runs, sold.index[:2], strict=True)):
        (root / "landing_zone" / f"erasure_requests_{stamp:%Y%m%d}.json").write_text(
            json.dumps([{"customer_id": str(erased)}]))
        for path in files:
            shutil.copy(path, root / "landing_zone" / path.name)
        every = sorted(set(mart(root, "customer_monthly")["month"]))
        recomputed.clear()
        result = minilake.run(root)
        assert result.ok and [f.status for f in result.ingest.files
                              if f.source == "erasure_requests"] == ["applied"]
        assert recomputed == [every], f"run {n}: recomputed in full {recomputed}"
        assert result.months is not None, f"run {n}: every month recomputed again"
        assert result.months if files else result.months == [], result.months
        check_against_raw(root, deleted=False)
        monthly = mart(root, "customer_monthly")
        names = monthly.loc[monthly["customer_id"] == erased, ["first_name", "last_name"]]
        assert len(names) and (names == "[erased]").all().all(), names
        assert_equal_to_a_full_recompute(root, tmp_path / f"full_{n}")


QUANTITY_TABLES = ["customer_monthly", "product_monthly", "_customer_state", "_product_daily"]


def quantity_types(root: Path) -> dict[str, pa.DataType]:
    """The type of ``total_quantity`` in each mart and kept table that has one, as stored."""
    return {name: pa.schema(DeltaTable(str(root / "tables" / "marts" / name)).schema()
                            .to_arrow()).field("total_quantity").type
            for name in QUANTITY_TABLES}


def widen_quantities(root: Path, every: int = 5) -> None:
    """The sales table as a contract's widening leaves it: rewritten by one overwrite with
    ``quantity`` a double; then, as later files may bring, every ``every``-th current sale
    half a unit more (its total with it)."""
    path = root / "tables" / "sales"
    table = DeltaTable(str(path))
    sales = pa.table(table.to_pyarrow_table())
    picked = pc.and_(sales.column("is_current"),
                     pa.array(np.arange(sales.num_rows) % every == 0))
    quantity = pc.cast(sales.column("quantity"), pa.float64())
    total = pc.round(pc.add(sales.column("total_price"),
                            pc.divide(sales.column("price_per_unit"), 2.0)), 2)
    for name, values in (("quantity", pc.if_else(picked, pc.add(quantity, 0.5), quantity)),
                         ("total_price", pc.if_else(picked, total,
                                                    sales.column("total_price")))):
        sales = sales.set_column(sales.schema.get_field_index(name), name, values)
    write_deltalake(str(path), sales, mode="overwrite", schema_mode="overwrite",
                    partition_by=table.metadata().partition_columns)


def from_tables(root: Path) -> dict[str, pd.DataFrame]:
    """The marts' and kept tables' rows computed here from the Delta tables alone (deltalake
    and pandas, no minilake code): each current sale meets the customer and product versions
    valid on its date; a customer's month takes names from their latest version begun by its
    last sale, membership only while that version is valid then."""
    def table(name: str) -> pd.DataFrame:
        return DeltaTable(str(root / "tables" / name)).to_pandas()

    def valid_on_sale_date(sales, versions, key, columns):
        both = sales[["sale_id", key, "sale_date"]].merge(
            versions[[key, "effective_from", "expiry_date", *columns]], on=key)
        both = both[(both["effective_from"] <= both["sale_date"])
                    & (both["sale_date"] < both["expiry_date"])]
        return sales.merge(both[["sale_id", *columns]], on="sale_id", how="left",
                           validate="one_to_one")

    sales = table("sales")
    sales = sales[sales["is_current"]].copy()
    sales["month"] = sales["sale_date"].map(lambda d: d.replace(day=1))
    sales["money"] = [Decimal(repr(p)) for p in sales["total_price"].tolist()]
    customers, products = table("customer"), table("product")
    sales = valid_on_sale_date(sales, customers, "customer_id", ["membership_status"])
    sales = valid_on_sale_date(sales, products, "product_id", ["name"])
    sales[["membership_status", "name"]] = sales[["membership_status", "name"]].fillna("(none)")

    def cents(values) -> float:
        return float(sum(values, Decimal(0)).quantize(Decimal("0.01"), ROUND_HALF_EVEN))

    per_customer = sales.groupby(["month", "customer_id"]).agg(
        orders=("sale_id", "count"), total_quantity=("quantity", "sum"),
        total_spent=("money", cents), last_sale=("sale_date", "max")).reset_index()
    per_customer["last_count"] = [
        int(((sales["customer_id"] == row.customer_id) & (sales["sale_date"] == row.last_sale))
            .sum()) for row in per_customer.itertuples()]
    begun = per_customer.merge(customers, on="customer_id", suffixes=("", "_v"))
    begun = begun[begun["effective_from"] <= begun["last_sale"]].sort_values("effective_from")
    latest = begun.groupby(["month", "customer_id"]).tail(1).copy()
    latest["membership_status"] = latest["membership_status"].where(
        latest["last_sale"] < latest["expiry_date"])
    customer = per_customer.merge(
        latest[["month", "customer_id", "first_name", "last_name", "membership_status"]],
        on=["month", "customer_id"], how="left", validate="one_to_one")
    product = sales.groupby(["month", "product_id", "name", "membership_status"]).agg(
        orders=("sale_id", "count"), total_quantity=("quantity", "sum"),
        revenue=("money", cents), money=("money", "sum")).reset_index()
    product["avg_unit_price"] = [m / Decimal(q) for m, q in zip(
        product["money"], product["total_quantity"].tolist(), strict=True)]
    daily = sales.groupby(["month", "sale_date", "membership_status"]).agg(
        orders=("sale_id", "count"), revenue=("money", cents),
        customers=("customer_id", "nunique")).reset_index()
    days = sales.groupby(["sale_date", "product_id", "name", "membership_status"]).agg(
        orders=("sale_id", "count"), total_quantity=("quantity", "sum")).reset_index()
    return {"customer_monthly": customer.fillna({"membership_status": "(none)"}),
            "product_monthly": product, "daily_sales": daily, "_customer_state": customer,
            "_product_daily": days, "sales": sales}


def check_against_tables(root: Path) -> None:
    """Every column of every mart, and the kept tables' sums, equal :func:`from_tables`; the
    MIDP-307 report's quantities are the per-customer sums too."""
    want = from_tables(root)
    for name, keys in KEYS.items():
        got = mart(root, name)
        exact = [c for c in got.columns if c not in keys and c != "avg_unit_price"]
        compare(got.fillna("(none)"), want[name].fillna("(none)"), keys, exact)
    keys = KEYS["product_monthly"]
    got = mart(root, "product_monthly").sort_values(keys).reset_index(drop=True)
    exact = want["product_monthly"].sort_values(keys).reset_index(drop=True)["avg_unit_price"]
    assert all(abs(Decimal(repr(g)) - e) <= Decimal("0.005") and round(g, 2) == g
               for g, e in zip(got["avg_unit_price"].tolist(), exact, strict=True))
    kept = {"_customer_state": (["month", "customer_id"],
                                ["orders", "total_quantity", "last_sale", "last_count"]),
            "_product_daily": (["sale_date", "product_id", "name", "membership_status"],
                               ["orders", "total_quantity"])}
    for name, (keys, columns) in kept.items():
        got = DeltaTable(str(root / "tables" / "marts" / name)).to_pandas()
        for column in ("month", "sale_date", "last_sale"):
            if column in got:
                got[column] = pd.to_datetime(got[column]).dt.date
        compare(got.fillna("(none)"), want[name].fillna("(none)"), keys, columns)
    sales = want["sales"]
    top = reports.top_customers(root).set_index("customer_id")
    sums = sales.groupby("customer_id")["quantity"].sum()
    active = sales[sales["membership_status"] == "active"].groupby("customer_id")[
        "quantity"].sum().reindex(sums.index, fill_value=0)
    assert list(top.index) == list(sums.rename("q").reset_index().sort_values(
        ["q", "customer_id"], ascending=[False, True])["customer_id"][:10])
    assert list(top["total_quantity"]) == list(sums[top.index])
    assert list(top["active_quantity"]) == list(active[top.index])


class Killed(BaseException):
    """A run stopped at a crash point (raised past every ``except Exception``)."""


def test_quantities_widened_to_doubles_remake_the_marts_in_full_once(world, tmp_path,
                                                                     monkeypatch):
    """Marts made while the sales' quantities are whole numbers keep today's types (decimal
    sums in the marts, integers in the kept tables). Then the sales table is widened (its
    quantity a double, some sales with half units) before a day's files: that run remakes
    every mart and kept table with double quantities, killed once after its first commit and
    run again; the next day moves them on. After each run every mart equals what is computed
    here from the tables (and a full recompute), and the MIDP-307 report sums the halves."""
    root = tmp_path / "root"
    held = world / "landing_zone"
    (root / "landing_zone").mkdir(parents=True)
    days = sorted({raw.file_date(p) for p in held.iterdir()})
    for n, run in enumerate([days[:-2], days[-2:-1], days[-1:]]):
        for day in run:
            for path in held.glob(f"*_{day:%Y%m%d}.*"):
                shutil.copy(path, root / "landing_zone" / path.name)
        if n == 1:
            widen_quantities(root)
            with monkeypatch.context() as patched:
                def killed(name):
                    if name == "marts.kept":
                        raise Killed(name)
                patched.setattr(marts, "crashpoint", killed)
                with pytest.raises(Killed):
                    minilake.run(root)
            assert set(quantity_types(root).values()) == {pa.int64(), pa.decimal128(38, 0),
                                                          pa.float64()}
        result = minilake.run(root)
        assert result.ok and result.marts, run
        if n == 0:
            assert quantity_types(root) == {
                "customer_monthly": pa.decimal128(38, 0), "product_monthly":
                pa.decimal128(38, 0), "_customer_state": pa.int64(), "_product_daily":
                pa.int64()}
        else:
            assert set(quantity_types(root).values()) == {pa.float64()}
            assert (result.months is None) == (n == 1), result.months
        check_against_tables(root)
        assert_equal_to_a_full_recompute(root, tmp_path / f"full_{n}")
    assert (from_tables(root)["sales"]["quantity"] % 1 == 0.5).sum() > 50


def raw_gone(archive: Path, first: dt.date) -> pd.DataFrame:
    """From the raw snapshots alone: each customer a snapshot dated before ``first`` holds and
    the one dated ``first`` does not, with the names and membership of the last snapshot
    holding them and the date of the first one after it without them (their expiry)."""
    last: dict[str, list] = {}
    held: set[str] = set()
    for path in raw.days(archive / "customer", "customer"):
        day = raw.file_date(path)
        if day > first:
            break
        rows = raw.customers(path).set_index("customer_id")
        for customer in held - set(rows.index):        # left: closed on this date
            last[customer][3] = day
        for customer, row in rows.iterrows():
            last[customer] = [row["first_name"], row["last_name"], row["membership_status"],
                              None]
        held = set(rows.index)
    return pd.DataFrame([(int(c), *v) for c, v in last.items() if v[3] is not None],
                        columns=["customer_id", "first_name", "last_name",
                                 "membership_status", "expiry_date"]).sort_values(
        "customer_id", ignore_index=True)


def test_a_month_of_gone_customers_is_made_from_the_month_before(tmp_path):
    """A steady world whose sales keep coming from customers who left: October's gone
    customers are kept, November's are made from them and the versions closed in October
    (not from the whole history), and equal what the raw snapshots say; made again from the
    whole history they are the same rows. The table keeps the month and the one before."""
    world = tmp_path / "world"
    generate(world, start="2024-09-20", days=48, customers=100, seed=8, landing_only=True,
             steady=True)
    root = tmp_path / "root"
    (root / "landing_zone").mkdir(parents=True)
    # one run each; the last one's refresh is of November alone (the one before also had
    # sales of 31 October)
    for through in ("20241010", "20241031", "20241103", "20241106"):
        for path in sorted((world / "landing_zone").iterdir()):
            if path.stem.rsplit("_", 1)[-1] <= through:
                shutil.move(path, root / "landing_zone" / path.name)
        assert minilake.run(root).ok, through
    kept = root / "tables" / "marts" / "_gone_customers"
    table = DeltaTable(str(kept)).to_pyarrow_table()
    november = dt.date(2024, 11, 1)
    assert set(table.column("month").to_pylist()) == {dt.date(2024, 10, 1), november}
    got = table.filter(pc.and_(pc.equal(table.column("month"), pa.scalar(november, pa.date32())),
                               pc.is_valid(table.column("customer_id")))).to_pandas()
    want = raw_gone(root / "archive", november)
    assert len(want) > 50                               # a month's worth of leavers and more
    pd.testing.assert_frame_equal(
        got[list(want.columns)].sort_values("customer_id", ignore_index=True), want)
    # the whole history, October's kept rows taken away, gives the same rows
    lake = marts.Lake(Layout.of(root))
    from_month = marts._made_gone(lake, duck.connect(), november)
    DeltaTable(str(kept)).delete("month = '2024-10-01'")
    from_history = marts._made_gone(marts.Lake(Layout.of(root)), duck.connect(), november)
    assert from_month.to_pylist() == from_history.to_pylist()
