"""Deliver a world's files in a given order, a few per run (a helper for test_history), and
the tables those files must give, built from the raw files alone (the tests' oracle).

The oracle uses the plain readers of ``rawfiles`` and pandas, no minilake code: a test that
compares minilake's tables with it compares two independent implementations of docs/formats.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd

import minilake
from support import rawfiles as raw

KEYS = {"customer": "customer_id", "product": "product_id", "sales": "sale_id"}
OPEN_END = dt.date(2099, 12, 31)          # docs/formats.md: the expiry_date of a current version
INTEGERS = {"customer_id", "quantity"}
DECIMALS = {"price", "price_per_unit", "total_price"}
DATES = {"date_of_birth", "creation_date", "sale_date"}


def table_contents(root: Path) -> dict[str, pd.DataFrame]:
    """Each source's table, every version, in a canonical row order."""
    out = {}
    for source in ("customer", "product", "sales"):
        frame = minilake.read_table(source, root=root)
        out[source] = frame.sort_values([frame.columns[0], frame.columns[1], "effective_from"]
                                        if source == "customer" else
                                        [frame.columns[1] if source == "product" else
                                         "sale_id", "effective_from"]).reset_index(drop=True)
    return out


def deliver(files: list[str], batches: list[int]) -> dict[str, pd.DataFrame]:
    """Copy ``files`` into a fresh root's landing zone ``batches[i]`` at a time, running
    minilake after each batch; return the tables. The marts are left out: they are made from
    the tables, and tests/stages/test_marts.py moves them on day by day against the raw files."""
    before = logging.root.manager.disable       # quiet here, and as it was after
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="arrivals-") as folder:   # removed either way
            root = Path(folder)
            (root / "landing_zone").mkdir()
            start = 0
            for size in batches:
                for name in files[start:start + size]:
                    shutil.copy(name, root / "landing_zone")
                start += size
                assert minilake.run(root, marts=False).ok
            return table_contents(root)
    finally:
        logging.disable(before)


# --- the oracle ---------------------------------------------------------------------------

def typed(column: str, text: str):
    """A raw field as the tables type it (docs/architecture.md): whole numbers, decimals, ISO
    dates, text; an empty field is a null. Two rows are the same version when their typed
    values are."""
    if text == "":
        return None
    if column in INTEGERS:          # a widened integer (docs/contracts.md) may have a
        return int(text) if text.lstrip("-").isdigit() else float(text)    # fraction
    if column in DECIMALS:
        return float(text)
    if column in DATES:             # a widened date (docs/contracts.md) may have a time;
        if len(text) > 10:          # its midnight is the date itself
            stamp = dt.datetime.fromisoformat(text)
            return stamp.date() if stamp.time() == dt.time() else stamp
        return dt.date.fromisoformat(text)
    return text


def days_of(folder: Path, source: str, archived: bool) -> list[tuple[dt.date, pd.DataFrame]]:
    """A source's raw files in date order, each with its date: from a landing zone (every
    source side by side) or, ``archived``, from ``folder/<source>/``."""
    prefix, reader = {"customer": ("customer", raw.customers),
                      "product": ("products", raw.products),
                      "sales": ("sales", raw.sales)}[source]
    files = raw.days(folder / source if archived else folder, prefix)
    return [(raw.file_date(path), reader(path)) for path in files]


def versions(days: list[tuple[dt.date, pd.DataFrame]], key: str, snapshot: bool,
             in_place: tuple[str, ...] = ()) -> pd.DataFrame:
    """The SCD2 versions the files make, in date order: a key's version lasts while its
    files bring the same values; a changed row closes it on the date of its file and opens
    the next; in a snapshot, a key missing from a day's file is closed that day. What is
    still open is current, to OPEN_END. A row that differs from its open version only in
    columns of ``in_place`` writes their values onto that version, which stays open."""
    opened: dict = {}                                   # key -> (values, effective_from)
    closed: list[tuple] = []
    columns: list[str] = []
    for day, frame in days:
        columns = list(frame.columns)
        tracked = [i for i, c in enumerate(columns) if c not in in_place]
        seen = set()
        for record in frame.itertuples(index=False):
            values = tuple(typed(c, v) for c, v in zip(columns, record, strict=True))
            name = values[columns.index(key)]
            seen.add(name)
            if name in opened and opened[name][0] == values:
                continue
            if name in opened and all(opened[name][0][i] == values[i] for i in tracked):
                opened[name] = (values, opened[name][1])
                continue
            if name in opened:
                closed.append((*opened[name][0], opened[name][1], day, False))
            opened[name] = (values, day)
        for name in [n for n in opened if snapshot and n not in seen]:
            values, since = opened.pop(name)
            closed.append((*values, since, day, False))
    rows = closed + [(*values, since, OPEN_END, True) for values, since in opened.values()]
    frame = pd.DataFrame(rows, columns=[*columns, "effective_from", "expiry_date",
                                        "is_current"])
    return frame.sort_values([key, "effective_from"]).reset_index(drop=True)


def expected_tables(folder: Path, archived: bool = False) -> dict[str, pd.DataFrame]:
    """Each source's table as its raw files in ``folder`` make it, applied in date order:
    customer and product are snapshots; sales are transactions (a sale is never closed by
    absence, only by a later row of the same sale_id that differs)."""
    return {source: versions(days_of(folder, source, archived), key, source != "sales")
            for source, key in KEYS.items()}


def rows(frame: pd.DataFrame) -> list[tuple]:
    """A frame's rows as tuples of plain values, nulls as None."""
    return [tuple(None if pd.isna(v) else v for v in row)
            for row in frame.astype(object).itertuples(index=False)]


def assert_matches_raw(tables: dict[str, pd.DataFrame], folder: Path, what: str,
                       archived: bool = False) -> None:
    """Every version of every table, values and dates, is the one the raw files make."""
    for source, want in expected_tables(folder, archived).items():
        got = tables[source][list(want.columns)]
        got = got.sort_values([KEYS[source], "effective_from"]).reset_index(drop=True)
        have, must = rows(got), rows(want)
        missing, extra = set(must) - set(have), set(have) - set(must)
        assert have == must, (f"{what}: {source}: {len(have)} versions, the raw files make "
                              f"{len(must)}; e.g. from the files only "
                              f"{sorted(missing, key=repr)[:3]}, in the table only "
                              f"{sorted(extra, key=repr)[:3]}")


def corrections(folder: Path, archived: bool = False) -> list[tuple[str, dt.date, dt.date]]:
    """Each correction in the raw sales files: (sale_id, the date of the file whose row it
    corrects, the date of the file that corrects it: a later row of the same sale with other
    values)."""
    history = versions(days_of(folder, "sales", archived), "sale_id", snapshot=False)
    closed = history[~history["is_current"]]
    return sorted(zip(closed["sale_id"], closed["effective_from"], closed["expiry_date"],
                      strict=True))
