"""The sample world (issue 2): formats, determinism, dynamics and references, from the raw files."""

from __future__ import annotations

import hashlib
import json
import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import rawfiles as raw

from minilake.generate import generate

QUOTED = r'"(?:[^"]|"")*"'
CUSTOMER_RECORD = re.compile(rf"{QUOTED}(?:,{QUOTED}){{14}}\n")


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def within(measured: float, figure: float, tolerance: float = 0.30) -> bool:
    return abs(measured - figure) <= tolerance * figure


@pytest.fixture(scope="module")
def week(sample_root):
    """Each day's raw files, read plainly."""
    landing = sample_root / "landing_zone"
    out = []
    for c, p, s in zip(raw.days(landing, "customer"), raw.days(landing, "products"),
                       raw.days(landing, "sales"), strict=True):
        assert raw.file_date(c) == raw.file_date(p) == raw.file_date(s)
        out.append({"date": raw.file_date(c), "customer": raw.customers(c),
                    "product": raw.products(p), "sales": raw.sales(s), "paths": (c, p, s)})
    return out


# --- formats (docs/formats.md)
# ------------------------------------------------------------------------

def test_one_week_of_three_sources(sample_root):
    names = sorted(p.name for p in (sample_root / "landing_zone").iterdir())
    assert len(names) == 21
    stamps = [f"202410{d:02d}" for d in range(9, 16)]
    assert names == sorted([f"customer_{s}.csv" for s in stamps]
                           + [f"products_{s}.json" for s in stamps]
                           + [f"sales_{s}.txt" for s in stamps])


def test_customer_files_are_fully_quoted_csv_with_newlines_in_addresses(week):
    for day in week:
        path = day["paths"][0]
        text = path.read_text(encoding="utf-8")
        records = CUSTOMER_RECORD.findall(text)
        assert "".join(records) == text, f"{path.name}: a record is not 15 quoted fields"
        frame = day["customer"]
        assert list(frame.columns) == raw.CUSTOMER_COLUMNS
        assert len(records) == len(frame) + 1          # the header is quoted too
        assert frame["address"].str.contains("\n").sum() > len(frame) / 10
        assert frame["customer_id"].is_unique


def test_product_files_are_indented_json_arrays(week):
    for i, day in enumerate(week):
        text = day["paths"][1].read_text(encoding="utf-8")
        assert text.startswith("[\n  {")
        records = json.loads(text)
        assert isinstance(records, list)
        assert all(set(r) == raw.PRODUCT_KEYS for r in records)
        assert len(records) == 5 + i                   # one new product a day
        assert any("\n" in r["description"] for r in records)
        assert all(re.fullmatch(r"P\d+", r["product_id"]) for r in records)


def test_sales_files_are_headerless_tilde_crlf_with_seven_fields(week):
    for day in week:
        data = day["paths"][2].read_bytes()
        lines = data.split(b"\r\n")
        assert lines[-1] == b"", "the last line ends with CRLF"
        lines = lines[:-1]
        assert b"\n" not in b"".join(lines), "no bare LF"
        assert all(line.count(b"~") == 6 for line in lines)
        assert len(lines) == len(day["sales"])
        assert not lines[0].startswith(b"sale_id")
        ids = day["sales"]["sale_id"]
        assert ids.str.fullmatch(r"\d+").all() and ids.str.startswith("0").all()


def test_crlf_addresses_are_a_stable_share_of_customers(tmp_path):
    """``crlf_addresses``: that share of customers (the same ones every day) have CRLF inside
    their quoted address; everything else is the world without the option, byte for byte."""
    args = {"start": "2024-01-01", "days": 3, "customers": 2000, "seed": 5,
            "landing_only": True}
    generate(tmp_path / "plain", **args)
    generate(tmp_path / "crlf", crlf_addresses=0.3, **args)
    chosen: dict[str, bool] = {}
    for plain, crlf in zip(raw.days(tmp_path / "plain" / "landing_zone", "customer"),
                           raw.days(tmp_path / "crlf" / "landing_zone", "customer"), strict=True):
        a, b = raw.customers(plain), raw.customers(crlf)
        assert b"\r" not in plain.read_bytes()
        assert b.drop(columns="address").equals(a.drop(columns="address"))
        assert (b["address"].str.replace("\r\n", "\n") == a["address"]).all()
        with_address = b[a["address"].str.contains("\n")]
        has_crlf = with_address["address"].str.contains("\r\n")
        assert within(has_crlf.mean(), 0.3, tolerance=0.15)
        for customer, flag in zip(with_address["customer_id"], has_crlf, strict=True):
            assert chosen.setdefault(customer, flag) == flag, f"{customer} changed its line ends"
    for source in ("products", "sales"):
        for plain, crlf in zip(raw.days(tmp_path / "plain" / "landing_zone", source),
                               raw.days(tmp_path / "crlf" / "landing_zone", source), strict=True):
            assert plain.read_bytes() == crlf.read_bytes()


def test_a_steady_world_keeps_its_volumes(tmp_path):
    """``steady`` (for measuring cost against history alone): as many customers each day, the
    same catalogue repriced (no product added), the same sales a day; without it the
    catalogue gains a product a day."""
    args = {"start": "2024-01-01", "days": 8, "customers": 300, "seed": 7, "landing_only": True}
    generate(tmp_path / "steady", steady=True, **args)
    generate(tmp_path / "growing", **args)
    steady, growing = (tmp_path / "steady" / "landing_zone", tmp_path / "growing" / "landing_zone")
    catalogues = [sorted(p["product_id"] for p in json.loads(path.read_text()))
                  for path in raw.days(steady, "products")]
    assert len(catalogues) == 8 and all(c == catalogues[0] for c in catalogues)
    assert [len(json.loads(p.read_text())) for p in raw.days(growing, "products")] == [
        len(catalogues[0]) + n for n in range(8)]
    assert len({len(raw.customers(p)) for p in raw.days(steady, "customer")}) == 1
    counts = [len([r for r in p.read_bytes().split(b"\r\n") if r])
              for p in raw.days(steady, "sales")]
    assert max(counts) <= 1.2 * min(counts), counts


# --- determinism ------------------------------------------------------------------------------

def test_same_seed_gives_byte_identical_trees_and_another_seed_differs(tmp_path):
    args = {"start": "2024-01-01", "days": 3, "customers": 200}
    generate(tmp_path / "a", seed=1, **args)
    generate(tmp_path / "b", seed=1, **args)
    generate(tmp_path / "c", seed=2, **args)
    a, b, c = (tree_digest(tmp_path / x) for x in "abc")
    assert a == b and len(a) == 9 + 3 + 3 + 8      # days, broken day, drifting day, refs
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.startswith("landing_zone/"))


# --- dynamics (docs/formats.md, within ±30 %)
# ---------------------------------------------------------

def test_day_one_sizes(week):
    first = week[0]
    assert within(len(first["customer"]), 5000)
    assert len(first["product"]) == 5
    assert within(len(first["sales"]), 8000)


def test_customer_dynamics(week):
    new, gone, changed, back = [], [], [], []
    changed_columns = pd.Series(0, index=raw.CUSTOMER_COLUMNS[1:])
    seen: set[str] = set()
    for before, after in pairwise(week):
        seen |= set(before["customer"]["customer_id"])
        b = before["customer"].set_index("customer_id")
        a = after["customer"].set_index("customer_id")
        kept = b.index.intersection(a.index)
        arrived = a.index.difference(b.index)
        new.append(len(arrived) / len(b))
        gone.append(len(b.index.difference(a.index)) / len(b))
        differs = (b.loc[kept] != a.loc[kept])
        changed.append(differs.any(axis=1).mean())
        changed_columns += differs.sum()
        back.append(len(arrived.intersection(list(seen))))
    assert within(np.mean(new), 0.095)
    assert within(np.mean(gone), 0.04)
    assert within(np.mean(changed), 0.12)
    assert sum(back) > 0, "deleted customers reappear now and then"
    assert (changed_columns > 0).all(), "every column changes"
    assert changed_columns.idxmax() == "membership_status"


def test_customer_attributes(week):
    every = pd.concat([d["customer"] for d in week])
    active = (every["membership_status"] == "active").mean()
    assert within(active, 0.11)
    optional = ["address", "phone_number", "job", "company", "city", "state", "country"]
    assert within((every[optional] == "").to_numpy().mean(), 0.5)
    assert every["customer_id"].str.len().between(15, 18).all()
    assert set(every["gender"]) == {"M", "F", "U"}
    assert set(every["language"]) == {"en-US", "es-ES", "fr-FR"}
    assert every["email"].str.fullmatch(r"[^@\s]+@[^@\s]+").all()
    pd.to_datetime(every["date_of_birth"], format="%Y-%m-%d")


def test_product_dynamics(week):
    for before, after in pairwise(week):
        b = before["product"].set_index("product_id")["price"].astype(float)
        a = after["product"].set_index("product_id")["price"].astype(float)
        assert set(b.index) < set(a.index) and len(a) == len(b) + 1
        move = (a.loc[b.index] / b - 1).abs()
        assert (move > 0).mean() > 0.5 and move.max() < 0.2, "prices move a few percent a day"


def test_sales_dynamics(week):
    counts = [len(d["sales"]) for d in week]
    growth = np.mean([b / a for a, b in pairwise(counts)]) - 1
    assert within(growth, 0.05)
    for i, day in enumerate(week):
        s = day["sales"]
        today = s[s["sale_date"] == day["date"].isoformat()]
        q = today["quantity"].astype(int)
        assert q.between(1, 5).all()
        share = q.value_counts(normalize=True)
        assert set(share.nlargest(2).index) == {1, 2}
        prices = day["product"].set_index("product_id")["price"].astype(float)
        ppu = today["price_per_unit"].astype(float)
        assert np.allclose(ppu.to_numpy(), prices.loc[today["product_id"]].to_numpy())
        total = today["total_price"].astype(float)
        assert np.allclose(total, q * ppu, atol=0.01)
        if i:
            deleted = ~today["customer_id"].isin(day["customer"]["customer_id"])
            assert within(deleted.mean(), 0.03)


def test_resent_corrections_change_an_earlier_sale(week):
    resent = 0
    for before, after in pairwise(week):
        old = after["sales"][after["sales"]["sale_date"] < after["date"].isoformat()]
        merged = old.merge(before["sales"], on="sale_id", suffixes=("", "_was"))
        assert len(merged) == len(old), "a resent sale was sent before"
        assert (merged["quantity"] != merged["quantity_was"]).all()
        resent += len(old)
    assert resent > 0


# --- references (docs/formats.md, MIDP-307), recomputed here from the raw files
# ------------------------

def money(series: pd.Series) -> pd.Series:
    return series.astype(float).round(2)


@pytest.fixture(scope="module")
def joined(sample_root, week):
    """Final sales joined to the snapshot and catalogue of their sale date."""
    sales = raw.final_sales(sample_root / "landing_zone")
    snapshots = pd.concat([d["customer"].assign(sale_date=d["date"].isoformat()) for d in week])
    catalogue = pd.concat([d["product"].assign(sale_date=d["date"].isoformat()) for d in week])
    out = sales.merge(snapshots[["customer_id", "sale_date", "membership_status"]],
                      on=["customer_id", "sale_date"], how="left")
    out = out.merge(catalogue[["product_id", "sale_date", "name"]],
                    on=["product_id", "sale_date"], how="left")
    assert len(out) == len(sales)
    out["total"] = out["total_price"].astype(float)
    out["quantity"] = out["quantity"].astype(int)
    return out


def test_customer_growth_is_each_days_snapshot_size(sample_root, week):
    ref = pd.read_csv(sample_root / "final_results" / "customer_growth.csv")
    assert ref["date"].tolist() == [d["date"].isoformat() for d in week]
    assert ref["customers"].tolist() == [len(d["customer"]) for d in week]
    assert (sample_root / "final_results" / "customer_growth.png").stat().st_size > 1000


def test_sales_by_membership(sample_root, joined):
    ref = pd.read_csv(sample_root / "final_results" / "sales_by_membership.csv", dtype=str)
    known = joined.dropna(subset=["membership_status"])
    mine = known.pivot_table(index="sale_date", columns="membership_status", values="total",
                             aggfunc="sum").round(2)
    assert ref["sale_date"].tolist() == mine.index.tolist()
    assert np.allclose(money(ref["active"]), mine["active"], atol=0.01)
    assert np.allclose(money(ref["inactive"]), mine["inactive"], atol=0.01)
    assert joined["membership_status"].isna().sum() > 0, "some sales meet no customer"


def test_product_breakdown(sample_root, joined):
    ref = pd.read_csv(sample_root / "final_results" / "product_sale_breakdown.csv", dtype=str)
    names = list(ref.columns[2:])
    assert names == sorted(joined["name"].unique())
    known = joined.dropna(subset=["membership_status"])
    mine = known.pivot_table(index=["sale_date", "membership_status"], columns="name",
                             values="total", aggfunc="sum", fill_value=0.0)
    mine = mine.reindex(columns=names, fill_value=0.0).round(2)
    keys = list(zip(ref["sale_date"], ref["membership_status"], strict=True))
    assert keys == mine.index.tolist()
    assert np.allclose(ref[names].astype(float).to_numpy(), mine.to_numpy(), atol=0.01)
    # and per day the breakdown adds up to the membership split
    split = pd.read_csv(sample_root / "final_results" / "sales_by_membership.csv")
    per_status = ref[names].astype(float).sum(axis=1).to_numpy().reshape(-1, 2)
    assert np.allclose(per_status, split[["active", "inactive"]].to_numpy(), atol=0.05)


@pytest.mark.parametrize("report,by", [("sales_report.csv", "total_quantity"),
                                       ("sales_report_active_member.csv", "active_quantity")])
def test_midp_307_reports(sample_root, week, joined, report, by):
    ref = pd.read_csv(sample_root / "final_results" / report, dtype={"customer_id": str})
    assert list(ref.columns) == ["rank", "customer_id", "first_name", "last_name", "email",
                                 "total_quantity", "active_quantity"]
    total = joined.groupby("customer_id")["quantity"].sum()
    active = joined[joined["membership_status"] == "active"].groupby("customer_id")[
        "quantity"].sum()
    mine = pd.DataFrame({"total_quantity": total, "active_quantity": active}).fillna(0)
    mine = mine.astype(int).reset_index()
    mine["id"] = mine["customer_id"].astype(np.int64)
    mine = mine.sort_values([by, "id"], ascending=[False, True]).head(10)
    assert ref["rank"].tolist() == list(range(1, 11))
    assert ref["customer_id"].tolist() == mine["customer_id"].tolist()
    assert ref["total_quantity"].tolist() == mine["total_quantity"].tolist()
    assert ref["active_quantity"].tolist() == mine["active_quantity"].tolist()
    # names and emails from the customer's latest snapshot row
    latest = pd.concat([d["customer"] for d in week]).drop_duplicates("customer_id", keep="last")
    latest = latest.set_index("customer_id").loc[ref["customer_id"]]
    for column in ("first_name", "last_name", "email"):
        assert ref[column].tolist() == latest[column].tolist()


# --- the broken day ---------------------------------------------------------------------------

def bad_customer_rows(frame: pd.DataFrame) -> pd.Series:
    required = ["customer_id", "first_name", "last_name", "gender", "email",
                "membership_status", "date_of_birth", "language"]
    bad = (frame[required] == "").any(axis=1)
    bad |= ~frame["gender"].isin(["M", "F", "U"])
    bad |= ~frame["membership_status"].isin(["active", "inactive"])
    bad |= ~frame["language"].isin(["en-US", "es-ES", "fr-FR"])
    bad |= ~frame["email"].str.fullmatch(r"[^@\s]+@[^@\s]+")
    bad |= pd.to_datetime(frame["date_of_birth"], format="%Y-%m-%d", errors="coerce").isna()
    bad |= ~frame["customer_id"].str.fullmatch(r"\d+")
    return bad


def bad_sales_rows(frame: pd.DataFrame) -> pd.Series:
    q = pd.to_numeric(frame["quantity"], errors="coerce")
    ppu = pd.to_numeric(frame["price_per_unit"], errors="coerce")
    total = pd.to_numeric(frame["total_price"], errors="coerce")
    bad = q.isna() | (q <= 0) | ppu.isna() | (ppu < 0) | total.isna() | (total < 0)
    bad |= (total - q * ppu).abs() > 0.01
    bad |= frame["sale_id"].duplicated(keep=False)
    return bad


def test_broken_day_faults_match_expected_errors(sample_root, week):
    broken = sample_root / "samples" / "broken_day"
    expected = pd.read_csv(sample_root / "final_results" / "expected_errors.csv")
    assert sorted(p.name for p in broken.iterdir()) == sorted(expected["file"])
    counts = dict(zip(expected["file"], expected["bad_rows"], strict=True))

    customers = raw.customers(broken / "customer_20241016.csv")
    bad = customers[bad_customer_rows(customers)]
    assert counts["customer_20241016.csv"] == len(bad) == 3
    assert set(bad["gender"]) >= {"; DROP TABLE users; --"}
    assert "1990-13-45" in set(bad["date_of_birth"]) and "" in set(bad["email"])
    assert bad["customer_id"].isin(week[-1]["customer"]["customer_id"]).all(), \
        "the bad customers had a version the day before"

    products = raw.products(broken / "products_20241016.json")
    bad = products[pd.to_numeric(products["price"], errors="coerce").isna()]
    assert counts["products_20241016.json"] == len(bad) == 1

    sales = raw.sales(broken / "sales_20241016.txt")
    assert (sales["total_price"] == "ERROR").sum() == 10
    assert (sales["quantity"] == "-9999999999").sum() == 10
    assert sales["sale_id"].duplicated().sum() == 1
    assert counts["sales_20241016.txt"] == bad_sales_rows(sales).sum() == 22
    assert (sales["sale_date"] == "2024-10-16").all(), "no corrections of reported days"


def test_committed_sample_world_is_the_generators(sample_root, committed):
    """landing_zone/, samples/ and final_results/ in the repository come from `generate`."""
    for folder in ("landing_zone", "samples", "final_results"):
        assert tree_digest(committed / folder) == tree_digest(sample_root / folder), folder
