"""A world's day drifting from its sources' declarations (docs/contracts.md): each form's file
with a column more or a column fewer, rewritten from the generator's files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd

from minilake.generate import generate
from minilake.lake.layout import Layout
from minilake.lake.logs import read_schema_log

DAY = "20241010"            # the drifting day: the second of a world from 2024-10-09
CUSTOMER, PRODUCT, SALES = (f"customer_{DAY}.csv", f"products_{DAY}.json", f"sales_{DAY}.txt")


def rewrite_csv(path: Path, change) -> None:
    """The CSV rewritten (every field quoted, as delivered) with ``change`` applied to its
    header and each row (as dicts, in order)."""
    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    rows = [change(dict(r)) for r in rows]
    out = io.StringIO()
    writer = csv.DictWriter(out, list(rows[0]), quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def rewrite_json(path: Path, change) -> None:
    records = [change(dict(r)) for r in json.loads(path.read_text(encoding="utf-8"))]
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")


def rewrite_tilde(path: Path, change) -> None:
    lines = [line for line in path.read_bytes().decode().split("\r\n") if line]
    path.write_bytes("".join("~".join(change(line.split("~"))) + "\r\n"
                             for line in lines).encode())


def add_column(landing: Path) -> None:
    """Each form's file of the day with one column more: a loyalty tier in the CSV's header
    and rows, a key in every JSON record, an eighth ``~`` field."""
    rewrite_csv(landing / CUSTOMER, lambda r: {**r, "loyalty_tier": "gold"})
    rewrite_json(landing / PRODUCT, lambda r: {**r, "supplier": "ACME"})
    rewrite_tilde(landing / SALES, lambda f: [*f, "web"])


def widen_column(landing: Path) -> None:
    """The day's product file with a creation time for every other product, its sales file
    with half a unit more in every other sale, priced so (a date column widened to a date
    and time, an integer one to numbers: docs/contracts.md)."""
    n = iter(range(1 << 30))
    rewrite_json(landing / PRODUCT, lambda r: {
        **r, "creation_date": r["creation_date"] + " 09:15:00"} if next(n) % 2 == 0 else r)

    def half_more(f: list[str]) -> list[str]:     # sale_id~customer~product~quantity~price~total
        if int(f[0]) % 2:
            return f
        quantity = int(f[3]) + 0.5
        return [*f[:3], str(quantity), f[4], f"{quantity * float(f[4]):.2f}", *f[6:]]
    rewrite_tilde(landing / SALES, half_more)


def drop_column(landing: Path, required: bool = True) -> None:
    """Each form's file of the day with one optional column fewer (the customer's job, the
    product's description); with ``required``, the sales file loses its last field (the
    required sale date: a headerless file's missing column is told by its field count)."""
    rewrite_csv(landing / CUSTOMER, lambda r: {k: v for k, v in r.items() if k != "job"})
    rewrite_json(landing / PRODUCT, lambda r: {k: v for k, v in r.items()
                                               if k != "description"})
    if required:
        rewrite_tilde(landing / SALES, lambda f: f[:-1])


def blank_column(landing: Path) -> None:
    """What a kept missing column stands for: the column present, every value empty (the
    sales file, which cannot lose a required field, is not delivered)."""
    rewrite_csv(landing / CUSTOMER, lambda r: {**r, "job": ""})
    rewrite_json(landing / PRODUCT, lambda r: {**r, "description": None})
    (landing / SALES).unlink()


# per source, what its contract does with a new column (a missing one is kept empty)
RULES = {"customer": "evolve", "product": "discard", "sales": "evolve"}


IN_PLACE = 12       # customers whose phone number alone changes (:func:`new_phones`)
IN_PLACE_COLUMNS = ["job", "loyalty_tier", "phone_number"]   # the drift world's customer's


def world(root: Path) -> Path:
    """Three days of a small world whose second drifts in each form, under a contract that
    adds the new column to the customer and sales tables, discards the product's, and keeps
    the customer's missing column empty, and widens the product's creation date to a date
    and time and the sales' quantity to numbers: 9 column changes in all. The customer's
    columns that come and go (and its phone numbers) are updated in place: on the second
    and third days, a customer whose row differs only in them keeps its version."""
    generate(root, start="2024-10-09", days=3, customers=200, seed=40, landing_only=True)
    (root / "minilake.toml").write_text("".join(
        f'[contract.{source}]\nnew_column = "{rule}"\nmissing_column = "evolve"\n'
        + (f"in_place = {json.dumps(IN_PLACE_COLUMNS)}\n" if source == "customer" else "")
        + ('widen = ["creation_date"]\n' if source == "product" else "")
        + ('widen = ["quantity"]\n' if source == "sales" else "")
        for source, rule in RULES.items()))
    add_column(root / "landing_zone")
    drop_column(root / "landing_zone", required=False)
    widen_column(root / "landing_zone")
    return root


def new_phones(landing: Path, day: str = "20241011") -> None:
    """``IN_PLACE`` customers of the customer file of ``day`` given a new phone number."""
    changed = iter(range(IN_PLACE))
    rewrite_csv(landing / f"customer_{day}.csv",
                lambda r: {**r, "phone_number": f"555-0199-{r['customer_id'][-4:]}"}
                if int(r["customer_id"]) % 5 == 0 and next(changed, None) is not None else r)


def schema_changes(root: Path) -> pd.DataFrame:
    """The root's schema log without when each row was logged, in a canonical order."""
    return read_schema_log(Layout.of(root)).drop(columns=["logged_at"]).sort_values(
        ["source", "file", "sha256", "change"]).reset_index(drop=True)
