"""Plain readers of the docs/formats.md formats, written for the tests only.

They are the tests' own oracle: pandas and json used directly, no minilake code, so a test that
compares minilake with them compares two independent implementations. A few edit generated
files to stage a case.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd

CUSTOMER_COLUMNS = [
    "customer_id", "first_name", "last_name", "gender", "email", "membership_status", "address",
    "phone_number", "date_of_birth", "job", "company", "city", "state", "country", "language",
]
PRODUCT_KEYS = {"name", "product_id", "price", "description", "creation_date"}
SALES_COLUMNS = ["sale_id", "customer_id", "product_id", "quantity", "price_per_unit",
                 "total_price", "sale_date"]


def file_date(path: Path) -> dt.date:
    return dt.datetime.strptime(re.search(r"_(\d{8})\.", path.name).group(1), "%Y%m%d").date()


def customers(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def products(path: Path) -> pd.DataFrame:
    records = json.loads(path.read_text(encoding="utf-8"))
    return pd.DataFrame(records).astype(str).replace({"None": ""})


def sales(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="~", header=None, names=SALES_COLUMNS, dtype=str,
                       keep_default_na=False)


def days(folder: Path, prefix: str) -> list[Path]:
    """A source's day files in date order (not ``….superseded-N`` copies)."""
    files = [p for p in folder.glob(f"{prefix}_*") if re.fullmatch(rf"{prefix}_\d{{8}}\.\w+",
                                                                    p.name)]
    return sorted(files, key=file_date)


def final_sales(folder: Path) -> pd.DataFrame:
    """Every sale as last sent: a later file's row replaces an earlier one (docs/formats.md)."""
    frames = [sales(p) for p in days(folder, "sales")]
    every = pd.concat(frames, ignore_index=True)
    return every.drop_duplicates("sale_id", keep="last").reset_index(drop=True)


def edit_snapshot(path: Path, customer: str, first_name: str | None) -> None:
    """Drop a customer from a CSV customer snapshot (``first_name`` None), or rename them."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    kept = [rows[0]]
    for row in rows[1:]:
        if row[0] == customer:
            if first_name is None:
                continue
            row[1] = first_name
        kept.append(row)
    with path.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(kept)


def gone_before_november(folder: Path) -> dict[str, str]:
    """Stage, in the files of a world generated from 27 October on, three customers who
    leave the snapshots before November and buy only on 2 November: one gone on 30 October,
    one on 1 November, and one gone on 30 October and back on 3 November renamed "Returned".
    Returns each one's id -> the date (YYYYMMDD) of the last snapshot holding them."""
    snapshots = days(folder, "customer")
    always = set.intersection(*(set(customers(p)["customer_id"]) for p in snapshots))
    early, gone, back = sorted(always)[:3]
    for path in folder.glob("sales_202411*"):      # their November sales: the ones below
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(line for line in lines
                                  if line.split(b"~")[1].decode() not in (early, gone, back)))
    for path in snapshots:
        day = file_date(path)
        if day >= dt.date(2024, 10, 30):
            edit_snapshot(path, early, None)
            edit_snapshot(path, back, None if day < dt.date(2024, 11, 3) else "Returned")
        if day >= dt.date(2024, 11, 1):
            edit_snapshot(path, gone, None)
    sold = folder / "sales_20241102.txt"
    product = sales(sold).iloc[0]
    with sold.open("ab") as out:
        for n, customer in enumerate((early, gone, back)):
            out.write(f"99000000{n:02d}~{customer}~{product.product_id}~1~"
                      f"{product.price_per_unit}~{product.price_per_unit}~2024-11-02\r\n"
                      .encode())
    return {early: "20241029", gone: "20241031", back: "20241029"}
