"""Reports on the tables (docs/formats.md, MIDP-307) and their comparison with ``final_results/``.

Every report is a function of ``root`` and ``until`` that returns a DataFrame in exactly the
shape of its reference file. Sales are taken in their current version and joined point in
time: a sale on day d meets the customer version and the product version valid on day d. Sales
that meet no valid version are left out of the membership splits; how many is in the frame's
``attrs["note"]``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from minilake.contract.sources import source_of
from minilake.lake import delta, logs, storage
from minilake.lake.layout import Layout
from minilake.lake.lock import hold

MONEY_TOLERANCE = 0.01
STATUSES = ["active", "inactive"]
REPORTS = ["customer_growth", "sales_by_membership", "product_sale_breakdown", "sales_report",
           "sales_report_active_member"]
MIDP_307 = ["sales_report", "sales_report_active_member"]


def _day(value: dt.date | str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def _scan(layout: Layout, name: str, columns: list[str], where=None) -> pd.DataFrame:
    return delta.dataset(layout.table(name)).to_table(columns=columns, filter=where).to_pandas()


def _on_or_before(column: str, until: dt.date | None):
    return None if until is None else pc.field(column) <= pa.scalar(until, pa.date32())


def _point_in_time(sales: pd.DataFrame, versions: pd.DataFrame, key: str,
                   date: str = "sale_date") -> pd.DataFrame:
    """Each sale with the version of ``key`` valid on its date (NaN columns if none is)."""
    joined = sales.reset_index(names="_sale").merge(versions, on=key, how="inner")
    valid = (joined["effective_from"] <= joined[date]) & (joined[date] < joined["expiry_date"])
    joined = joined.loc[valid].drop(columns=["effective_from", "expiry_date"])
    out = sales.reset_index(names="_sale").merge(joined.drop(columns=list(sales.columns)),
                                                 on="_sale", how="left")
    return out.drop(columns="_sale")


def sales_with_versions(root: str | Path = ".", until: dt.date | str | None = None
                        ) -> pd.DataFrame:
    """Current sales up to ``until``, each with its customer's membership and product's name
    as valid on the sale date."""
    layout, until = Layout.of(root), _day(until)
    where = pc.field("is_current") == pa.scalar(True)
    if until is not None:
        where = where & _on_or_before("sale_date", until)
    sales = _scan(layout, "sales", ["sale_id", "customer_id", "product_id", "quantity",
                                    "total_price", "sale_date"], where)
    customers = _scan(layout, "customer", ["customer_id", "membership_status", "effective_from",
                                           "expiry_date"], _on_or_before("effective_from", until))
    products = _scan(layout, "product", ["product_id", "name", "effective_from", "expiry_date"],
                     _on_or_before("effective_from", until))
    out = _point_in_time(sales, customers, "customer_id")
    return _point_in_time(out, products, "product_id")


def _note(frame: pd.DataFrame, joined: pd.DataFrame, missing: pd.Series,
          what: str) -> pd.DataFrame:
    amount = joined.loc[missing, "total_price"].sum()
    frame.attrs["note"] = (f"{int(missing.sum())} sale(s) ({amount:.2f}) met no valid {what} "
                           f"version on their date and are left out")
    return frame


def customer_growth(root: str | Path = ".", until: dt.date | str | None = None) -> pd.DataFrame:
    """``date``, ``customers``: versions valid on each customer file date up to ``until``."""
    layout, until = Layout.of(root), _day(until)
    log = logs.read_log(layout)
    applied = log[(log["source"] == "customer") & (log["status"] == "applied")]
    dates = sorted({d for d in applied["file_date"] if until is None or d <= until})
    versions = _scan(layout, "customer", ["effective_from", "expiry_date"])
    starts = np.sort(versions["effective_from"].to_numpy(dtype="datetime64[D]"))
    ends = np.sort(versions["expiry_date"].to_numpy(dtype="datetime64[D]"))
    days = np.array(dates, dtype="datetime64[D]")
    valid = np.searchsorted(starts, days, "right") - np.searchsorted(ends, days, "right")
    return pd.DataFrame({"date": [d.isoformat() for d in dates], "customers": valid})


def sales_by_membership(root: str | Path = ".", until: dt.date | str | None = None
                        ) -> pd.DataFrame:
    """``sale_date``, ``active``, ``inactive``: the sum of ``total_price`` per day."""
    joined = sales_with_versions(root, until)
    known = joined.dropna(subset=["membership_status"])
    sums = known.pivot_table(index="sale_date", columns="membership_status",
                             values="total_price", aggfunc="sum", fill_value=0.0)
    days = sorted(joined["sale_date"].unique())
    sums = sums.reindex(index=days, columns=STATUSES, fill_value=0.0).round(2)
    frame = pd.DataFrame({"sale_date": [d.isoformat() for d in days],
                          "active": sums["active"].to_numpy(),
                          "inactive": sums["inactive"].to_numpy()})
    return _note(frame, joined, joined["membership_status"].isna(), "customer")


def product_sale_breakdown(root: str | Path = ".", until: dt.date | str | None = None
                           ) -> pd.DataFrame:
    """``sale_date``, ``membership_status``, then one column per product name (A-Z)."""
    layout, until = Layout.of(root), _day(until)
    joined = sales_with_versions(root, until)
    names = sorted(_scan(layout, "product", ["name"], _on_or_before("effective_from", until))[
        "name"].unique())
    known = joined.dropna(subset=["membership_status", "name"])
    sums = known.pivot_table(index=["sale_date", "membership_status"], columns="name",
                             values="total_price", aggfunc="sum", fill_value=0.0)
    days = sorted(joined["sale_date"].unique())
    index = pd.MultiIndex.from_product([days, STATUSES])
    sums = sums.reindex(index=index, columns=names, fill_value=0.0).round(2)
    frame = pd.DataFrame({"sale_date": [d.isoformat() for d, _ in index],
                          "membership_status": [s for _, s in index]})
    frame = pd.concat([frame, pd.DataFrame(sums.to_numpy(), columns=names)], axis=1)
    lost = joined["membership_status"].isna() | joined["name"].isna()
    return _note(frame, joined, lost, "customer or product")


def top_customers(root: str | Path = ".", until: dt.date | str | None = None, *,
                  active_only: bool = False, n: int = 10) -> pd.DataFrame:
    """MIDP-307: the ``n`` customers with the largest quantity bought (``active_only``: bought
    while their valid version was an active member); ties broken by ``customer_id``."""
    layout, until = Layout.of(root), _day(until)
    joined = sales_with_versions(root, until)
    active = joined["membership_status"] == "active"
    totals = pd.DataFrame({
        "total_quantity": joined.groupby("customer_id")["quantity"].sum(),
        "active_quantity": joined[active].groupby("customer_id")["quantity"].sum(),
    }).fillna(0).astype(joined["quantity"].dtype).reset_index()   # a widened quantity: float
    by = "active_quantity" if active_only else "total_quantity"
    top = totals.sort_values([by, "customer_id"], ascending=[False, True]).head(n)
    versions = _scan(layout, "customer", ["customer_id", "first_name", "last_name", "email",
                                          "effective_from"], _on_or_before("effective_from", until))
    latest = versions.sort_values("effective_from").drop_duplicates("customer_id", keep="last")
    top = top.merge(latest.drop(columns="effective_from"), on="customer_id", how="left")
    top.insert(0, "rank", range(1, len(top) + 1))
    return top[["rank", "customer_id", "first_name", "last_name", "email", "total_quantity",
                "active_quantity"]]


def build(name: str, root: str | Path = ".", until: dt.date | str | None = None
          ) -> pd.DataFrame:
    """One report by its file name (without .csv)."""
    makers = {"customer_growth": customer_growth, "sales_by_membership": sales_by_membership,
              "product_sale_breakdown": product_sale_breakdown,
              "sales_report": lambda r, u: top_customers(r, u),
              "sales_report_active_member": lambda r, u: top_customers(r, u, active_only=True)}
    if name not in makers:
        raise ValueError(f"no report {name!r}; reports: {', '.join(makers)}")
    return makers[name](root, until)


def write(frame: pd.DataFrame, path: Path) -> Path:
    """A report as CSV, money with two decimals."""
    with storage.publish(path, "w", encoding="utf-8", newline="") as out:
        frame.to_csv(out, index=False, float_format="%.2f")
    return path


def write_reports(root: str | Path = ".", until: dt.date | str | None = None,
                  out: str | Path | None = None, names: list[str] | None = None
                  ) -> dict[str, pd.DataFrame]:
    """Build and write reports as CSV (default: all of them, into ``root/reports``)."""

    folder = storage.as_path(out) if out is not None else Layout.of(root).reports
    with hold(Layout.of(root).root, "report"):
        frames = {name: build(name, root, until) for name in names or REPORTS}
        for name, frame in frames.items():
            write(frame, folder / f"{name}.csv")
    return frames


# --- comparison with final_results/ -----------------------------------------------------------

@dataclass
class Verdict:
    report: str
    matches: bool
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.report}: {'matches' if self.matches else 'DIFFERS: ' + self.detail}"


def compare(frame: pd.DataFrame, reference: pd.DataFrame, report: str,
            tolerance: float = MONEY_TOLERANCE, shown: int = 3) -> Verdict:
    """Cell by cell: numbers within ``tolerance``, everything else as text."""
    if list(frame.columns) != list(reference.columns):
        extra = [c for c in frame.columns if c not in reference.columns]
        missing = [c for c in reference.columns if c not in frame.columns]
        detail = "columns differ" + (f"; not in reference: {extra}" if extra else "") + (
            f"; missing: {missing}" if missing else "")
        if not extra and not missing:
            detail = f"column order differs: {list(frame.columns)}"
        return Verdict(report, False, detail)
    if len(frame) != len(reference):
        return Verdict(report, False, f"{len(frame)} rows, reference has {len(reference)}")
    cells = []
    for column in reference.columns:
        mine, theirs = frame[column].reset_index(drop=True), reference[column].reset_index(
            drop=True)
        a, b = pd.to_numeric(mine, errors="coerce"), pd.to_numeric(theirs, errors="coerce")
        if a.notna().all() and b.notna().all():
            differs = (a - b).abs() > tolerance + 1e-9
        else:
            differs = mine.astype(str) != theirs.astype(str)
        cells += [(i, column, mine[i], theirs[i]) for i in np.flatnonzero(differs.to_numpy())]
    if not cells:
        return Verdict(report, True)
    cells.sort(key=lambda c: (c[0], list(reference.columns).index(c[1])))
    shown_cells = "; ".join(f"row {i + 1} {c}: {_shown(m)} vs {_shown(t)} in the reference"
                            for i, c, m, t in cells[:shown])
    more = f" (+{len(cells) - shown} more cells)" if len(cells) > shown else ""
    return Verdict(report, False, f"{len(cells)} cell(s): {shown_cells}{more}")


def _shown(value: object) -> str:
    """A cell as a person reads it: its text, quoted (no ``np.int64(…)``)."""
    return f"'{value.item() if hasattr(value, 'item') else value}'"


def covered_until(root: str | Path = ".") -> dt.date | None:
    """The last date the references in final_results/ cover (their customer growth's last
    day), or None without them: reports are compared with them up to that date."""
    path = Layout.of(root).final_results / "customer_growth.csv"
    try:
        with path.open("rb") as handle:
            dates = pd.read_csv(handle, dtype=str)["date"]
    except FileNotFoundError:
        return None
    return dt.date.fromisoformat(max(dates)) if len(dates) else None


def reference(name: str, root: str | Path = ".") -> pd.DataFrame:
    with (Layout.of(root).final_results / f"{name}.csv").open("rb") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


def check(name: str, root: str | Path = ".", until: dt.date | str | None = None,
          frame: pd.DataFrame | None = None) -> Verdict:
    """A report (built, or the one given) against its reference in final_results/."""
    frame = build(name, root, until) if frame is None else frame
    return compare(frame, reference(name, root), name)




# --- charts -----------------------------------------------------------------------------------

def _axes(ax):
    import matplotlib.pyplot as plt  # on first use: start-up stays light

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    return ax


def plot_customer_growth(frame: pd.DataFrame, ax=None):
    """Line chart of customers per day; returns the matplotlib Axes."""
    ax = _axes(ax)
    ax.plot(pd.to_datetime(frame["date"]), frame["customers"], marker="o")
    ax.set(title="Customer growth", xlabel="date", ylabel="customers")
    ax.grid(alpha=0.3)
    ax.figure.autofmt_xdate()
    return ax


def plot_sales_by_membership(frame: pd.DataFrame, ax=None):
    """Active and inactive members' sales per day; returns the matplotlib Axes."""
    ax = _axes(ax)
    days = pd.to_datetime(frame["sale_date"])
    for status in STATUSES:
        ax.plot(days, frame[status].astype(float), marker="o", label=status)
    ax.set(title="Sales by membership", xlabel="sale_date", ylabel="total sales")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.figure.autofmt_xdate()
    return ax


def beside(frame: pd.DataFrame, name: str, root: str | Path = ".") -> pd.DataFrame:
    """A report and its reference side by side (columns ``(column, 'minilake'|'reference')``)."""
    ref = reference(name, root)
    mine = frame.astype(str).reset_index(drop=True)
    both = pd.concat({"minilake": mine, "reference": ref.reset_index(drop=True)}, axis=1)
    order = [(c, side) for c in ref.columns for side in ("minilake", "reference")]
    return both.swaplevel(axis=1).reindex(columns=order)


def chart_beside_reference(plot, frame: pd.DataFrame, name: str, root: str | Path = "."):
    """minilake's chart on the left, the reference PNG from final_results/ on the right."""
    import matplotlib.image as mpimg  # on first use: start-up stays light
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 4.5))
    plot(frame, ax=left)
    left.set_title(left.get_title() + " (minilake)")
    with (Layout.of(root).final_results / f"{name}.png").open("rb") as handle:
        right.imshow(mpimg.imread(handle, format="png"))
    right.set_title("reference (final_results/)")
    right.axis("off")
    fig.tight_layout()
    return fig


# --- MIDP-313 ---------------------------------------------------------------------------------

def error_summary(root: str | Path = ".", files: list[str] | None = None) -> pd.DataFrame:
    """``source``, ``file``, ``bad_rows`` from the ingest log (optionally only ``files``), in
    the shape of ``final_results/expected_errors.csv``."""
    log = logs.read_log(Layout.of(root))
    log = log[log["status"] == "applied"]
    if files is not None:
        log = log[log["file"].isin(files)]
    out = log[["source", "file", "rows_rejected"]].rename(columns={"rows_rejected": "bad_rows"})
    return out.sort_values(["source", "file"]).drop_duplicates("file", keep="last").reset_index(
        drop=True)


def error_report(root: str | Path, file: str) -> pd.DataFrame:
    """The error report written for an archived file (raw bad rows + ``errors``)."""

    source = source_of(file)
    if source is None:
        raise ValueError(f"{file!r} is not a file of any source")
    path = Layout.of(root).error_report(source.name, source.report_stamp(file))
    with path.open("rb") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)
