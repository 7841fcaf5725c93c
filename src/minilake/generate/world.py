"""The sample world: a model of the shop's three source systems, day by day, and its ground truth.

The generator is a *model of upstream*, deliberately independent of the pipeline: it has its own
writers for the three file formats of docs/formats.md and computes the references in
``final_results/``
(docs/formats.md, MIDP-307) from its own in-memory state of each day. Nothing here imports the
pipeline's readers, SCD2 or report code, so a bug there cannot hide behind the same bug here.

It is vectorised: Faker fills pools of names, streets, jobs, … once per process (the same
vocabulary for every seed: the seed decides which of them each customer has, and everything
else); every customer attribute is an integer code into its pool, drawn with numpy, and strings
are only materialised (with pyarrow ``take``) when a file is written.

Longer than most because the model of the three source systems, their file writers and the
ground truth computed from the model are one thing: the references must follow the rules the
files were written by.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from minilake.defaults import SAMPLE

log = logging.getLogger(__name__)

# --- docs/formats.md, as the upstream systems know it ---------------------------------------------

CUSTOMER_COLUMNS = [
    "customer_id", "first_name", "last_name", "gender", "email", "membership_status", "address",
    "phone_number", "date_of_birth", "job", "company", "city", "state", "country", "language",
]
OPTIONAL_CUSTOMER_COLUMNS = ["address", "phone_number", "job", "company", "city", "state",
                             "country"]
# Attributes drawn from a Faker pool: column -> (Faker method, pool size).
POOLED = {
    "first_name": ("first_name", 1500),
    "last_name": ("last_name", 1500),
    "email": ("email", 6000),
    "address": ("address", 6000),
    "phone_number": ("phone_number", 6000),
    "job": ("job", 1500),
    "company": ("company", 3000),
    "city": ("city", 3000),
    "state": ("state", 200),
    "country": ("country", 1000),
}
ENUMS = {
    "gender": (["M", "F", "U"], [0.48, 0.48, 0.04]),
    "membership_status": (["inactive", "active"], [0.89, 0.11]),
    "language": (["en-US", "es-ES", "fr-FR"], [0.6, 0.25, 0.15]),
}
DOB_RANGE = (dt.date(1945, 1, 1), dt.date(2006, 12, 31))
EPOCH = dt.date(1970, 1, 1)


# Day-to-day dynamics (docs/formats.md).
DAY_ONE_CUSTOMERS = 5000
DAY_ONE_PRODUCTS = 5
DAY_ONE_SALES_PER_CUSTOMER = 8000 / 5000
NEW_RATE = 0.095
DELETE_RATE = 0.04
CHANGE_RATE = 0.12
REAPPEAR_SHARE = 0.10          # share of a day's new customers who are deleted ones coming back
SALES_GROWTH = 1.05
DELETED_SALES_SHARE = 0.03
CORRECTION_SHARE = 0.002       # share of yesterday's sales resent corrected
PRICE_MOVE_SD = 0.03
QUANTITY_P = [0.38, 0.30, 0.15, 0.10, 0.07]
OPTIONAL_EMPTY_P = 0.5
# Probability that a changing customer changes a column; membership most often, and at rates that
# keep the active share at its equilibrium of about 11 % (flows in and out balance).
MEMBERSHIP_CHANGE_P = {1: 0.90, 0: 0.90 * 0.11 / 0.89}
OTHER_CHANGE_P = 0.06

PRODUCT_NAMES = [
    "Laptop Pro 15", "Smartphone X", "Wireless Earbuds", "4K Monitor", "Mechanical Keyboard",
    "Gaming Mouse", "Smartwatch", "Tablet Air", "Bluetooth Speaker", "USB-C Hub", "External SSD",
    "Webcam HD", "Wi-Fi Router", "Noise-Cancelling Headphones", "E-Reader", "Action Camera",
    "Drone Mini", "Portable Charger", "Smart Thermostat", "VR Headset", "Graphics Tablet",
    "Laser Printer", "Streaming Stick", "Fitness Tracker", "Smart Doorbell", "Desk Lamp LED",
    "Microphone USB", "Docking Station", "Smart Plug", "Projector Mini",
]

SALES_FAULTS = {"total_price": ("ERROR", 10), "quantity": ("-9999999999", 10)}
BROKEN_CUSTOMER_FAULTS = {"gender": "; DROP TABLE users; --", "date_of_birth": "1990-13-45",
                          "email": ""}


def file_names(day: dt.date) -> dict[str, str]:
    """The three landing file names of one day (docs/formats.md)."""
    stamp = day.strftime("%Y%m%d")
    return {"customer": f"customer_{stamp}.csv", "product": f"products_{stamp}.json",
            "sales": f"sales_{stamp}.txt"}


# --- helpers ---------------------------------------------------------------------------------

def _money(cents: np.ndarray) -> pa.Array:
    """Integer cents -> text with two decimals ('1234.50'), exactly."""
    cents = np.asarray(cents, dtype=np.int64)
    units = pa.array(cents // 100).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(cents % 100).cast(pa.string()), width=2, padding="0")
    return pc.binary_join_element_wise(units, frac, ".")


def _money_str(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _dates(days_since_epoch: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days_since_epoch, dtype=np.int32), pa.int32()).cast(
        pa.date32()).cast(pa.string())


def _share_of(ids: np.ndarray, share: float) -> np.ndarray:
    """Whether each id is among a stable ``share`` of all ids (a fixed hash of the id, so the
    same customer is chosen every day and no rng draw is spent)."""
    mixed = ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)      # wraps: mod 2**64
    return (mixed >> np.uint64(11)).astype(np.float64) / 2.0**53 < share


@functools.cache
def _build_pools() -> dict[str, pa.Array]:
    """Faker fills each pool once a process (~3 s: Faker formats each value afresh), with the
    sample world's seed, whatever the world's; a trailing '' serves code -1 (missing). The
    arrays are immutable; a world takes a copy of the dict."""
    from faker import Faker  # on first use: start-up stays light

    fake = Faker("en_US")
    fake.seed_instance(SAMPLE["seed"])
    pools = {}
    for column, (method, size) in POOLED.items():
        make = getattr(fake, method)
        values = list(dict.fromkeys(make() for _ in range(size)))  # distinct, in draw order
        pools[column] = pa.array(values + [""], pa.string())
    for column, (values, _) in ENUMS.items():
        pools[column] = pa.array(values, pa.string())
    return pools


# --- the model -------------------------------------------------------------------------------

@dataclass
class World:
    """The upstream systems' state on the current day, plus everything the references need."""

    seed: int
    start: dt.date
    customers_day_one: int
    steady: bool = False          # constant daily volumes: as many arrive as leave, flat sales,
                                  # a catalogue of constant size
    crlf_addresses: float = 0.0   # share of customers whose address has CRLF (not LF) inside
    rng: np.random.Generator = field(init=False)
    pools: dict[str, pa.Array] = field(init=False)
    day_index: int = -1
    customers: pd.DataFrame = field(init=False)      # current snapshot, one int code per column
    deleted: pd.DataFrame = field(init=False)        # last state of customers deleted upstream
    products: pd.DataFrame = field(init=False)       # catalogue: product_id, name, price_cents, …
    used_ids: set = field(default_factory=set)
    next_sale: int = 1
    # ground truth, day by day
    growth: list = field(default_factory=list)       # (date, snapshot size)
    sales: list = field(default_factory=list)        # per file: sales rows with membership at sale

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.pools = dict(_build_pools())
        self.customers = self._new_customers(0)
        self.deleted = self.customers.iloc[0:0].copy()
        self.products = pd.DataFrame(
            columns=["product_id", "name", "price_cents", "description", "creation_date"])

    @property
    def scale(self) -> float:
        return self.customers_day_one / DAY_ONE_CUSTOMERS

    @property
    def today(self) -> dt.date:
        return self.start + dt.timedelta(days=self.day_index)

    # customers ------------------------------------------------------------------------------

    def _fresh_ids(self, n: int) -> np.ndarray:
        """n new customer ids, 15-18 digits, never used before."""
        out = np.empty(0, dtype=np.int64)
        while len(out) < n:
            k = n - len(out)
            digits = self.rng.integers(15, 19, size=k)
            low = (10 ** (digits - 1)).astype(np.int64)
            ids = self.rng.integers(low, 10 * low)
            ids = np.unique(ids)
            ids = ids[~np.isin(ids, np.fromiter(self.used_ids, np.int64, len(self.used_ids)))]
            out = np.concatenate([out, self.rng.permutation(ids)])[:n]
        self.used_ids.update(out.tolist())
        return out

    def _draw(self, column: str, n: int) -> np.ndarray:
        if column in ENUMS:
            values, p = ENUMS[column]
            return self.rng.choice(len(values), size=n, p=p).astype(np.int32)
        if column == "date_of_birth":
            lo, hi = ((d - EPOCH).days for d in DOB_RANGE)
            return self.rng.integers(lo, hi + 1, size=n).astype(np.int32)
        codes = self.rng.integers(0, len(self.pools[column]) - 1, size=n).astype(np.int32)
        if column in OPTIONAL_CUSTOMER_COLUMNS:
            codes[self.rng.random(n) < OPTIONAL_EMPTY_P] = -1
        return codes

    def _new_customers(self, n: int) -> pd.DataFrame:
        n = n or self.customers_day_one
        data = {"customer_id": self._fresh_ids(n)}
        for column in CUSTOMER_COLUMNS[1:]:
            data[column] = self._draw(column, n)
        return pd.DataFrame(data)

    def _change(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Change one or more attributes of every row of ``frame`` (membership most often)."""
        frame = frame.copy()
        n = len(frame)
        others = [c for c in CUSTOMER_COLUMNS[1:] if c != "membership_status"]
        active = frame["membership_status"].to_numpy() == 1
        p_membership = np.where(active, MEMBERSHIP_CHANGE_P[1], MEMBERSHIP_CHANGE_P[0])
        chosen = {"membership_status": self.rng.random(n) < p_membership}
        for column in others:
            chosen[column] = self.rng.random(n) < OTHER_CHANGE_P
        nothing = ~np.any(np.column_stack(list(chosen.values())), axis=1)
        fallback = self.rng.integers(0, len(others), size=n)
        for i, column in enumerate(others):
            chosen[column] |= nothing & (fallback == i)
        for column, mask in chosen.items():
            k = int(mask.sum())
            if not k:
                continue
            old = frame.loc[mask, column].to_numpy()
            if column == "membership_status":
                new = 1 - old
            elif column in ("gender", "language"):
                new = (old + self.rng.integers(1, 3, size=k)) % 3
            else:
                new = self._draw(column, k)
            frame.loc[mask, column] = new.astype(np.int32)
        return frame

    def _advance_customers(self) -> None:
        snap = self.customers
        n = len(snap)
        gone = self.rng.random(n) < DELETE_RATE
        self.deleted = pd.concat([self.deleted, snap[gone]], ignore_index=True)
        stay = snap[~gone].reset_index(drop=True)
        changing = self.rng.random(len(stay)) < CHANGE_RATE
        stay.loc[changing] = self._change(stay[changing])
        n_new = int(gone.sum()) if self.steady else int(round(NEW_RATE * n))
        # Deleted ones come back now and then (never those deleted today).
        earlier = len(self.deleted) - int(gone.sum())
        n_back = min(int(round(REAPPEAR_SHARE * n_new)), earlier)
        back_rows = self.rng.choice(earlier, size=n_back, replace=False) if n_back else []
        back = self.deleted.iloc[back_rows]
        self.deleted = self.deleted.drop(self.deleted.index[back_rows]).reset_index(drop=True)
        fresh = self._new_customers(n_new - n_back)
        self.customers = pd.concat([stay, back, fresh], ignore_index=True)

    # products -------------------------------------------------------------------------------

    def _new_products(self, n: int, created: list[dt.date]) -> pd.DataFrame:
        from faker import Faker  # on first use: start-up stays light

        fake = Faker("en_US")
        fake.seed_instance(self.seed * 7919 + len(self.products))
        first = len(self.products)
        rows = []
        for i in range(n):
            k = first + i
            base = PRODUCT_NAMES[k % len(PRODUCT_NAMES)]
            name = base if k < len(PRODUCT_NAMES) else f"{base} Gen {k // len(PRODUCT_NAMES) + 1}"
            rows.append({
                "product_id": f"P{1001 + k}",
                "name": name,
                "price_cents": int(self.rng.integers(1999, 199999)),
                "description": f"{fake.sentence(nb_words=8)}\n{fake.sentence(nb_words=10)}",
                "creation_date": created[i].isoformat(),
            })
        return pd.DataFrame(rows)

    def _advance_products(self) -> None:
        if self.day_index == 0:
            created = [self.start - dt.timedelta(days=int(d))
                       for d in sorted(self.rng.integers(30, 400, DAY_ONE_PRODUCTS))[::-1]]
            self.products = self._new_products(DAY_ONE_PRODUCTS, created)
            return
        moves = 1 + self.rng.normal(0, PRICE_MOVE_SD, len(self.products))
        prices = np.maximum(np.round(self.products["price_cents"].to_numpy() * moves), 1)
        self.products["price_cents"] = prices.astype(np.int64)
        if self.steady:         # constant volumes: the catalogue keeps its size
            return
        self.products = pd.concat(
            [self.products, self._new_products(1, [self.today])], ignore_index=True)

    # sales ----------------------------------------------------------------------------------

    def _membership_of(self, customer_ids: np.ndarray) -> np.ndarray:
        """Membership code on today's snapshot (1 active, 0 inactive, -1 not in the snapshot)."""
        snap = pd.Series(self.customers["membership_status"].to_numpy(),
                         index=self.customers["customer_id"].to_numpy())
        return snap.reindex(customer_ids).fillna(-1).to_numpy(np.int8)

    def _new_sales(self, corrections: bool) -> pd.DataFrame:
        growth = 1.0 if self.steady else SALES_GROWTH ** self.day_index
        n = int(round(DAY_ONE_SALES_PER_CUSTOMER * self.customers_day_one * growth))
        ids = self.customers["customer_id"].to_numpy()
        customer = ids[self.rng.integers(0, len(ids), size=n)]
        if len(self.deleted):
            of_deleted = self.rng.random(n) < DELETED_SALES_SHARE
            pool = self.deleted["customer_id"].to_numpy()
            customer[of_deleted] = pool[self.rng.integers(0, len(pool), int(of_deleted.sum()))]
        product = self.rng.integers(0, len(self.products), size=n)
        quantity = self.rng.choice(np.arange(1, 6), size=n, p=QUANTITY_P)
        ppu = self.products["price_cents"].to_numpy()[product]
        sales = pd.DataFrame({
            "sale_id": np.arange(self.next_sale, self.next_sale + n, dtype=np.int64),
            "customer_id": customer,
            "product": product,
            "quantity": quantity,
            "ppu_cents": ppu,
            "total_cents": quantity * ppu,
            "sale_date": np.full(n, self.day_index, dtype=np.int32),
            "membership": self._membership_of(customer),
        })
        self.next_sale += n
        if corrections and self.sales:
            previous = self.sales[-1]
            previous = previous[previous["sale_date"] == self.day_index - 1]
            k = int(round(CORRECTION_SHARE * len(previous)))
            fixed = previous.iloc[np.sort(self.rng.choice(len(previous), k, replace=False))].copy()
            fixed["quantity"] = (fixed["quantity"] + self.rng.integers(1, 5, k) - 1) % 5 + 1
            fixed["total_cents"] = fixed["quantity"] * fixed["ppu_cents"]
            sales = pd.concat([sales, fixed], ignore_index=True)
        return sales

    # the day --------------------------------------------------------------------------------

    def advance(self, corrections: bool = True) -> None:
        """Move the world to the next day; record that day's truth."""
        self.day_index += 1
        if self.day_index > 0:
            self._advance_customers()
        self._advance_products()
        self.sales.append(self._new_sales(corrections))
        self.growth.append((self.today, len(self.customers)))

    # writers (docs/formats.md formats)
    # -----------------------------------------------------------------

    def customer_table(self) -> pa.Table:
        snap = self.customers
        columns = {"customer_id": pa.array(snap["customer_id"].to_numpy()).cast(pa.string())}
        for column in CUSTOMER_COLUMNS[1:]:
            codes = snap[column].to_numpy()
            if column == "date_of_birth":
                columns[column] = _dates(codes)
                continue
            pool = self.pools[column]
            codes = np.where(codes < 0, len(pool) - 1, codes)
            columns[column] = pool.take(pa.array(codes))
        if self.crlf_addresses:
            crlf = pa.array(_share_of(snap["customer_id"].to_numpy(), self.crlf_addresses))
            address = columns["address"]
            columns["address"] = pc.if_else(crlf, pc.replace_substring(address, "\n", "\r\n"),
                                            address)
        return pa.table(columns)

    def product_records(self) -> list[dict]:
        return [{"name": r.name, "product_id": r.product_id, "price": r.price_cents / 100,
                 "description": r.description, "creation_date": r.creation_date}
                for r in self.products.itertuples()]

    def sales_table(self) -> pa.Table:
        s = self.sales[-1]
        product_ids = pa.array(self.products["product_id"].to_numpy(dtype=object), pa.string())
        return pa.table({
            "sale_id": pc.utf8_lpad(pa.array(s["sale_id"].to_numpy()).cast(pa.string()), 10, "0"),
            "customer_id": pa.array(s["customer_id"].to_numpy()).cast(pa.string()),
            "product_id": product_ids.take(pa.array(s["product"].to_numpy())),
            "quantity": pa.array(s["quantity"].to_numpy()).cast(pa.string()),
            "price_per_unit": _money(s["ppu_cents"].to_numpy()),
            "total_price": _money(s["total_cents"].to_numpy()),
            "sale_date": _dates(s["sale_date"].to_numpy() + (self.start - EPOCH).days),
        })


def write_customers(table: pa.Table, path: Path) -> None:
    """Header row, every field double-quoted (also empty ones), ',' separator, '\\n' line ends."""
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="all_valid"))


def write_products(records: list[dict], path: Path) -> None:
    """An indented JSON array of objects."""
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_sales(table: pa.Table, path: Path) -> None:
    """No header, '~' separator, CRLF line ends, 7 fields."""
    pacsv.write_csv(table, path, pacsv.WriteOptions(
        include_header=False, delimiter="~", quoting_style="none", eol="\r\n"))


def write_day(world: World, folder: Path, added: bool = False, dropped: bool = False,
              widened: bool = False) -> dict[str, Path]:
    """The day's three files; ``added``: the customers with a loyalty tier more, ``dropped``:
    the products without descriptions, ``widened``: the products' creation dates with a time
    of day (docs/contracts.md, ``generate --drift``)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {k: folder / v for k, v in file_names(world.today).items()}
    customers = world.customer_table()
    write_customers(_with_tiers(world, customers) if added else customers, names["customer"])
    records = [_with_time(r) for r in world.product_records()] if widened else \
        world.product_records()
    write_products([{k: v for k, v in r.items() if k != "description"} for r in records]
                   if dropped else records, names["product"])
    write_sales(world.sales_table(), names["sales"])
    return names


def _with_time(record: dict) -> dict:
    """A product record whose creation date has a time of day, the product's own (from its
    id: the same every day; one product in five at midnight, which is its date)."""
    code = int(record["product_id"][1:]) * 2654435761 % 2**32
    seconds = 0 if code % 5 == 0 else code % 86_400
    time = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return {**record, "creation_date": f"{record['creation_date']} {time}"}


def _with_tiers(world: World, customers: pa.Table) -> pa.Table:
    """The customers with a ``loyalty_tier`` column more (most empty), drawn for the day."""
    rng = np.random.default_rng([world.seed, 2_000_003, world.today.toordinal()])
    tiers = pa.array(["", "silver", "gold"], pa.string()).take(
        pa.array(rng.choice(3, size=customers.num_rows, p=[0.7, 0.2, 0.1])))
    return customers.append_column("loyalty_tier", tiers)


# --- ground truth (docs/formats.md and MIDP-307, from the model alone) ----------------------------

def _final_sales(world: World) -> pd.DataFrame:
    """Each sale as last sent: a resent correction replaces the earlier row."""
    every = pd.concat(world.sales, ignore_index=True)
    return every.drop_duplicates("sale_id", keep="last")


def truth_customer_growth(world: World) -> pd.DataFrame:
    return pd.DataFrame({"date": [d.isoformat() for d, _ in world.growth],
                         "customers": [n for _, n in world.growth]})


def _day(world: World, index: pd.Series) -> pd.Series:
    return index.map(lambda i: (world.start + dt.timedelta(days=int(i))).isoformat())


def truth_sales_by_membership(world: World) -> pd.DataFrame:
    sales = _final_sales(world)
    known = sales[sales["membership"] >= 0]
    cents = known.pivot_table(index="sale_date", columns="membership", values="total_cents",
                              aggfunc="sum", fill_value=0)
    cents = cents.reindex(columns=[1, 0], fill_value=0)
    out = pd.DataFrame({"sale_date": _day(world, cents.index.to_series())})
    out["active"] = [_money_str(int(c)) for c in cents[1]]
    out["inactive"] = [_money_str(int(c)) for c in cents[0]]
    return out.reset_index(drop=True)


def truth_product_breakdown(world: World) -> pd.DataFrame:
    sales = _final_sales(world)
    known = sales[sales["membership"] >= 0].copy()
    known["name"] = world.products["name"].to_numpy()[known["product"].to_numpy()]
    names = sorted(world.products["name"])
    cents = known.pivot_table(index=["sale_date", "membership"], columns="name",
                              values="total_cents", aggfunc="sum", fill_value=0)
    days = sorted(sales["sale_date"].unique())
    full = pd.MultiIndex.from_product([days, [1, 0]], names=["sale_date", "membership"])
    cents = cents.reindex(index=full, columns=names, fill_value=0)
    out = pd.DataFrame({
        "sale_date": _day(world, pd.Series(cents.index.get_level_values(0))),
        "membership_status": ["active" if m == 1 else "inactive"
                              for m in cents.index.get_level_values(1)],
    })
    for name in names:
        out[name] = [_money_str(int(c)) for c in cents[name]]
    return out.sort_values(["sale_date", "membership_status"]).reset_index(drop=True)


def truth_top_customers(world: World, active_only: bool) -> pd.DataFrame:
    sales = _final_sales(world)
    total = sales.groupby("customer_id")["quantity"].sum()
    active = sales[sales["membership"] == 1].groupby("customer_id")["quantity"].sum()
    frame = pd.DataFrame({"total_quantity": total, "active_quantity": active}).fillna(0)
    frame = frame.astype(np.int64).rename_axis("customer_id").reset_index()
    by = "active_quantity" if active_only else "total_quantity"
    top = frame.sort_values([by, "customer_id"], ascending=[False, True]).head(10)
    # Names and emails from the customer's latest state: today's snapshot, else as deleted.
    latest = pd.concat([world.customers, world.deleted]).drop_duplicates("customer_id")
    latest = latest.set_index("customer_id").loc[top["customer_id"]]
    out = pd.DataFrame({"rank": range(1, len(top) + 1), "customer_id": top["customer_id"].values})
    for column in ("first_name", "last_name", "email"):
        out[column] = world.pools[column].take(pa.array(latest[column].to_numpy())).to_pylist()
    out["total_quantity"] = top["total_quantity"].values
    out["active_quantity"] = top["active_quantity"].values
    return out


def _plot(frame: pd.DataFrame, x: str, ys: list[str], title: str, ylabel: str,
          path: Path) -> None:
    import matplotlib  # on first use: start-up stays light

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # on first use: start-up stays light

    fig, ax = plt.subplots(figsize=(8, 4.5))
    days = pd.to_datetime(frame[x])
    for y in ys:
        ax.plot(days, frame[y].astype(float), marker="o", label=y)
    ax.set_title(title)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(ys) > 1:
        ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def write_references(world: World, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    growth = truth_customer_growth(world)
    growth.to_csv(folder / "customer_growth.csv", index=False)
    _plot(growth, "date", ["customers"], "Customer growth", "customers",
          folder / "customer_growth.png")
    membership = truth_sales_by_membership(world)
    membership.to_csv(folder / "sales_by_membership.csv", index=False)
    _plot(membership, "sale_date", ["active", "inactive"], "Sales by membership",
          "total sales", folder / "sales_by_membership.png")
    truth_product_breakdown(world).to_csv(folder / "product_sale_breakdown.csv", index=False)
    truth_top_customers(world, active_only=False).to_csv(folder / "sales_report.csv", index=False)
    truth_top_customers(world, active_only=True).to_csv(
        folder / "sales_report_active_member.csv", index=False)


# --- the broken day (README.md, the sample world) -------------------------------------------------

def write_broken_day(world: World, folder: Path) -> pd.DataFrame:
    """Advance one more day and write it with known faults; return expected errors per file.

    The day carries no resent corrections, so applying it never changes a report of earlier days.
    """
    before = set(world.customers["customer_id"].tolist())
    world.advance(corrections=False)
    folder.mkdir(parents=True, exist_ok=True)
    names = {k: folder / v for k, v in file_names(world.today).items()}
    rng = np.random.default_rng(world.seed + 1_000_003)

    customers = world.customer_table().to_pandas()
    kept = np.flatnonzero(customers["customer_id"].astype(np.int64).isin(before).to_numpy())
    victims = rng.choice(kept, size=len(BROKEN_CUSTOMER_FAULTS), replace=False)
    for row, (column, value) in zip(victims, BROKEN_CUSTOMER_FAULTS.items(), strict=True):
        customers.loc[row, column] = value
    write_customers(pa.Table.from_pandas(customers, preserve_index=False), names["customer"])

    records = world.product_records()
    records[int(rng.integers(0, len(records) - 1))]["price"] = ""
    write_products(records, names["product"])

    sales = world.sales_table().to_pandas()
    picks = rng.choice(len(sales), size=sum(n for _, n in SALES_FAULTS.values()) + 1,
                       replace=False)
    start = 0
    for column, (value, n) in SALES_FAULTS.items():
        sales.loc[picks[start:start + n], column] = value
        start += n
    twice = sales.iloc[[picks[start]]]
    sales = pd.concat([sales, twice], ignore_index=True)
    write_sales(pa.Table.from_pandas(sales, preserve_index=False), names["sales"])

    n_sales_bad = sum(n for _, n in SALES_FAULTS.values()) + 2   # both copies of the duplicate
    return pd.DataFrame({
        "source": ["customer", "product", "sales"],
        "file": [names["customer"].name, names["product"].name, names["sales"].name],
        "bad_rows": [len(BROKEN_CUSTOMER_FAULTS), 1, n_sales_bad],
    })


# --- the drifting day (docs/contracts.md) -------------------------------------------------------

DRIFT = {"customer": ("loyalty_tier", "job"), "product": (None, "description"),
         "sales": ("channel", None)}       # per source: (the column added, the column dropped)


def write_drifting_day(world: World, folder: Path) -> None:
    """Advance one more day and write it with each source's columns drifting from the
    declaration (:data:`DRIFT`): the customer CSV with a loyalty tier more and its job column
    gone, the product JSON without descriptions and with creation times (a date widened), the
    sales with an eighth field (the channel). No resent corrections, so applying it changes
    no report of earlier days."""
    world.advance(corrections=False)
    folder.mkdir(parents=True, exist_ok=True)
    names = {k: folder / v for k, v in file_names(world.today).items()}
    rng = np.random.default_rng(world.seed + 2_000_003)
    customers = world.customer_table().drop_columns(["job"])
    tiers = pa.array(["", "silver", "gold"], pa.string()).take(
        pa.array(rng.choice(3, size=customers.num_rows, p=[0.7, 0.2, 0.1])))
    write_customers(customers.append_column("loyalty_tier", tiers), names["customer"])
    write_products([{k: v for k, v in _with_time(r).items() if k != "description"}
                    for r in world.product_records()], names["product"])
    sales = world.sales_table()
    channels = pa.array(["web", "store"], pa.string()).take(
        pa.array(rng.choice(2, size=sales.num_rows)))
    write_sales(sales.append_column("channel", channels), names["sales"])


# --- entry point -----------------------------------------------------------------------------

def generate(root: str | Path = ".", start: str | dt.date = SAMPLE["start"],
             days: int = SAMPLE["days"], customers: int = SAMPLE["customers"],
             seed: int = SAMPLE["seed"], landing_only: bool = False, steady: bool = False,
             crlf_addresses: float = 0.0, progress: bool = False, drift: bool = False
             ) -> World:
    """Write ``days`` days of landing files into ``root/landing_zone``.

    Unless ``landing_only``, also write the next day with known faults into
    ``root/samples/broken_day``, the day after it with its columns drifting into
    ``root/samples/drifting_day`` (docs/contracts.md) and the ground-truth references into
    ``root/final_results``.
    ``steady`` keeps daily volumes constant (as many customers arrive as leave, no sales
    growth, no product added to the catalogue: only prices move), for measuring how cost
    grows with history alone. ``crlf_addresses`` is the share of customers (the same ones
    every day) whose address holds CRLF instead of LF inside its quotes, as some exports
    write it. ``drift``: the sources' columns change mid-way (docs/contracts.md): the customer
    files gain a loyalty tier from the middle day on, the product files a time of day in
    their creation dates (a date widened) from then on, and lose their descriptions from the
    day after. Same arguments, byte-identical files.
    """
    from tqdm.auto import tqdm  # on first use: start-up stays light

    if "://" in str(root):
        raise ValueError(f"generate writes a local folder, not {root}; generate one, then "
                         f"upload it to the bucket")
    root = Path(root)
    start = dt.date.fromisoformat(start) if isinstance(start, str) else start
    world = World(seed=seed, start=start, customers_day_one=customers, steady=steady,
                  crlf_addresses=crlf_addresses)
    landing = root / "landing_zone"
    middle = days // 2
    for n in tqdm(range(days), desc="generate", unit="day", disable=not progress):
        world.advance()
        write_day(world, landing, added=drift and n >= middle, dropped=drift and n > middle,
                  widened=drift and n >= middle)
        log.info("generated %s: %d customers, %d products, %d sales", world.today,
                 len(world.customers), len(world.products), len(world.sales[-1]))
    if not landing_only:
        write_references(world, root / "final_results")
        expected = write_broken_day(world, root / "samples" / "broken_day")
        expected.to_csv(root / "final_results" / "expected_errors.csv", index=False)
        write_drifting_day(world, root / "samples" / "drifting_day")
    return world
