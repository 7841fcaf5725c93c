"""Plain readers of the SPEC §1 formats, written for the tests only.

They are the tests' own oracle: pandas and json used directly, no minilake code, so a test that
compares minilake with them compares two independent implementations.
"""

from __future__ import annotations

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
    """Every sale as last sent: a later file's row replaces an earlier one (SPEC §4)."""
    frames = [sales(p) for p in days(folder, "sales")]
    every = pd.concat(frames, ignore_index=True)
    return every.drop_duplicates("sale_id", keep="last").reset_index(drop=True)
