"""Late and resent files, rebuild, time travel (issue 6)."""

from __future__ import annotations

import itertools
import random
import shutil
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from support import rawfiles as raw
from support.arrivals import (
    assert_matches_raw,
    corrections,
    days_of,
    deliver,
    table_contents,
    versions,
)

import minilake
from minilake.generate import generate
from minilake.lake.layout import Layout
from minilake.lake.logs import read_log
from minilake.load import maintain as upkeep

ORDERS = 12


@pytest.fixture(scope="module")
def tiny_week(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_week")
    generate(root, start="2024-10-09", days=7, customers=100, seed=21, landing_only=True)
    return root


def assert_tables_equal(got: dict, want: dict, what: str) -> None:
    for source in want:
        pd.testing.assert_frame_equal(got[source], want[source], obj=f"{what}: {source}")


def arrival_orders(files: list[str]) -> list[tuple[list[str], list[int]]]:
    """ORDERS shuffles of the files, each cut into runs of 1 to 3 files."""
    rng = random.Random(2024)
    cases = []
    for _ in range(ORDERS):
        order = files[:]
        rng.shuffle(order)
        batches = []
        while sum(batches) < len(order):
            batches.append(min(rng.choice([1, 1, 1, 2, 3]), len(order) - sum(batches)))
        cases.append((order, batches))
    return cases


@pytest.fixture(scope="module")
def in_order(tiny_week) -> dict:
    files = sorted((str(p) for p in (tiny_week / "landing_zone").iterdir()),
                   key=lambda f: raw.file_date(Path(f)))
    return deliver(files, [len(files)])


def test_in_order_arrival_gives_the_versions_the_raw_files_make(tiny_week, in_order):
    """The reference of the arrival-order tests, checked against the oracle built from the
    raw files alone (tests/support/arrivals.py), not only against minilake itself."""
    assert_matches_raw(in_order, tiny_week / "landing_zone", "in order")


@pytest.mark.parametrize("chunk", range(4))
def test_any_arrival_order_gives_the_tables_of_in_order_arrival(chunk, tiny_week, in_order):
    files = sorted(str(p) for p in (tiny_week / "landing_zone").iterdir())
    for i, (order, batches) in enumerate(arrival_orders(files)):
        if i % 4 == chunk:
            assert_tables_equal(deliver(order, batches), in_order, f"order {i}: {order}")


@pytest.fixture
def week(small_root, tmp_path) -> Path:
    """A small world's four days, applied in order."""
    shutil.copytree(small_root / "landing_zone", tmp_path / "landing_zone")
    assert minilake.run(tmp_path).ok
    return tmp_path


def test_a_resent_sales_file_supersedes_the_earlier_one(week):
    path = week / "archive" / "sales" / "sales_20241010.txt"
    original = raw.sales(path)
    later = pd.concat([raw.sales(week / "archive" / "sales" / n)
                       for n in ("sales_20241011.txt", "sales_20241012.txt")])
    fixable = original[~original["sale_id"].isin(later["sale_id"])
                       & (original["sale_date"] == "2024-10-10")].head(3)
    corrected = original.copy()
    for i in fixable.index:
        q = int(corrected.loc[i, "quantity"]) % 5 + 1
        corrected.loc[i, "quantity"] = str(q)
        corrected.loc[i, "total_price"] = f"{q * float(corrected.loc[i, 'price_per_unit']):.2f}"
    (week / "landing_zone" / path.name).write_bytes(
        "".join("~".join(r) + "\r\n" for r in corrected.itertuples(index=False)).encode())
    result = minilake.run(week)
    assert result.ok
    assert any("kept as sales_20241010.txt.superseded-1" in line for line in result.lines())
    assert (week / "archive" / "sales" / "sales_20241010.txt.superseded-1").read_bytes() == \
        b"".join(line + b"\r\n" for line in
                 ["~".join(r).encode() for r in original.itertuples(index=False)])
    table = minilake.read_table("sales", root=week)
    for row in fixable.itertuples():
        versions = table[table["sale_id"] == row.sale_id]
        want = corrected.loc[row.Index]
        assert versions["quantity"].tolist() == [int(want["quantity"])]
        assert versions["total_price"].tolist() == [float(want["total_price"])]
        assert versions["effective_from"].astype(str).tolist() == ["2024-10-10"], \
            "dated by the resent file"
        assert versions["is_current"].tolist() == [True]
    log = read_log(Layout.of(week))
    mine = log[log["file"] == "sales_20241010.txt"].sort_values("finished_at")
    assert mine["status"].tolist()[-2:] in (["applied", "superseded"],
                                            ["superseded", "applied"])
    status = minilake.status(week).set_index("source")
    assert status.loc["sales", "superseded"] == 1 and status.loc["sales", "resent"] == 1


def test_a_resent_snapshot_for_an_old_day_recomputes_later_versions(week):
    old = week / "archive" / "customer" / "customer_20241010.csv"
    frame = raw.customers(old)
    flipped = frame["customer_id"].iloc[:20]
    frame.loc[frame.index[:20], "membership_status"] = frame["membership_status"].iloc[:20].map(
        {"active": "inactive", "inactive": "active"})
    frame = frame.iloc[:-5]                              # five customers missing that day
    frame.to_csv(week / "landing_zone" / old.name, index=False, quoting=1)
    assert minilake.run(week).ok
    # every day the table shows exactly that day's snapshot, with the resent one for 10-10
    for path in raw.days(week / "archive" / "customer", "customer"):
        expected = raw.customers(path).sort_values("customer_id")
        got = minilake.read_table("customer", as_of=raw.file_date(path), root=week)
        assert sorted(got["customer_id"].astype(str)) == sorted(expected["customer_id"])
        got = got.set_index(got["customer_id"].astype(str))
        exp = expected.set_index("customer_id")
        assert (got.loc[exp.index, "membership_status"] == exp["membership_status"]).all()
    # the flipped customers changed back on 10-11: a new version from that day
    table = minilake.read_table("customer", root=week)
    on_11 = raw.customers(week / "archive" / "customer" / "customer_20241011.csv").set_index(
        "customer_id")
    for cid in flipped:
        if cid in on_11.index:
            mine = table[table["customer_id"] == int(cid)]
            assert "2024-10-11" in mine["effective_from"].astype(str).tolist()


def test_sales_corrections_close_the_earlier_version_on_the_day_of_their_file(week):
    """In the generated world, a row of sale X in the file of day D that differs from an
    earlier one closes that version with expiry_date D, and its own starts on D."""
    fixes = corrections(week / "archive", archived=True)
    assert len(fixes) >= 2, f"the generated world holds {len(fixes)} correction(s) to check"
    table = minilake.read_table("sales", root=week)
    closed = table[~table["is_current"]]
    assert sorted(zip(closed["sale_id"], closed["effective_from"], closed["expiry_date"],
                      strict=True)) == fixes
    current = table[table["is_current"]].set_index("sale_id")
    latest = {sale: day for sale, _, day in fixes}          # in date order: the last one
    assert {sale: current.loc[sale, "effective_from"] for sale in latest} == latest


def test_rebuild_equals_incremental_ingestion(week):
    before = table_contents(week)
    assert_matches_raw(before, week / "archive", "incremental", archived=True)
    versions_before = minilake.versions("customer", week)["version"].max()
    result = minilake.rebuild(root=week)
    assert result.ok and {f.source for f in result.files} == {"customer", "product", "sales"}
    assert_tables_equal(table_contents(week), before, "rebuild")
    history = minilake.versions("customer", week)
    assert history["version"].max() == versions_before + 1
    assert history.iloc[-1]["operation"] == "REBUILD"
    assert not (week / "tables" / ".rebuild").exists() or not any(
        (week / "tables" / ".rebuild").iterdir())
    with pytest.raises(ValueError, match="sources: customer, product, sales"):
        minilake.rebuild("customers", root=week)


def test_a_reader_during_a_rebuild_sees_the_old_or_the_new_table(small_root, tmp_path):
    landing = tmp_path / "landing_zone"
    shutil.copytree(small_root / "landing_zone", landing)
    late = landing / "sales_20241010.txt"
    shutil.move(late, tmp_path / late.name)
    assert minilake.run(tmp_path).ok
    old = len(minilake.read_table("sales", root=tmp_path))
    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.append(len(minilake.read_table("sales", root=tmp_path)))
            except Exception as error:        # noqa: BLE001 - a failed read is a finding too
                errors.append(repr(error))

    thread = threading.Thread(target=reader)
    thread.start()
    shutil.move(tmp_path / late.name, late)
    result = minilake.run(tmp_path)
    stop.set()
    thread.join()
    new = len(minilake.read_table("sales", root=tmp_path))
    days = days_of(tmp_path / "archive", "sales", archived=True)
    assert (old, new) == (len(versions([d for d in days if d[0].day != 10], "sale_id", False)),
                          len(versions(days, "sale_id", False)))          # the raw files'
    assert result.ok
    assert any(f.event == "late" for f in result.ingest.files)
    assert errors == []
    assert len(seen) > 5 and set(seen) <= {old, new}, sorted(set(seen))


def test_time_travel_by_business_date_and_by_table_version(week):
    first = raw.customers(week / "archive" / "customer" / "customer_20241009.csv")
    v0 = minilake.read_table("customer", root=week, version=0)
    assert sorted(v0["customer_id"].astype(str)) == sorted(first["customer_id"])
    history = minilake.versions("customer", week)
    assert history["files"].tolist() == ["customer_20241009.csv", "customer_20241010.csv",
                                         "customer_20241011.csv", "customer_20241012.csv"]
    v1 = minilake.read_table("customer", root=week, version=1)
    second = raw.customers(week / "archive" / "customer" / "customer_20241010.csv")
    assert sorted(v1.loc[v1["is_current"], "customer_id"].astype(str)) == sorted(
        second["customer_id"])
    as_of = minilake.read_table("customer", as_of="2024-10-09", root=week)
    assert sorted(as_of["customer_id"].astype(str)) == sorted(first["customer_id"])


# --- repairs from a date on (issue 39: the cost of a late file follows the days after it) -----

PREFIXES = {"customer": "customer", "product": "products", "sales": "sales"}


@pytest.fixture(scope="module")
def sixty_days(tmp_path_factory) -> Path:
    """Sixty generated days, small: the landing files by date."""
    root = tmp_path_factory.mktemp("sixty_days")
    generate(root, start="2024-10-09", days=60, customers=40, seed=39, landing_only=True)
    return root / "landing_zone"


def by_date(landing: Path) -> dict:
    out: dict = {}
    for path in landing.iterdir():
        out.setdefault(raw.file_date(path), []).append(path)
    return dict(sorted(out.items()))


def replayed(root: Path, since: int) -> tuple[pd.DataFrame, int]:
    """The applied rows the ingest log gained after its first ``since`` rows, and its length."""
    log = read_log(Layout.of(root))
    new = log.iloc[since:]
    return new[new["status"] == "applied"], len(log)


def archived_on_or_after(root: Path, source: str, day) -> set[str]:
    return {p.name for p in raw.days(root / "archive" / source, PREFIXES[source])
            if raw.file_date(p) >= day}


def test_each_late_file_replays_only_the_files_from_its_date_on(sixty_days, tmp_path):
    """Every other day of sixty arrives a day late, beside the day after next: each run repairs
    its sources from the late date, replaying only the files dated from then on (three per
    source: the late one, the one applied after it, the new one), never the ones before; the
    tables equal the raw files applied in date order every ten runs and at the end."""
    days = by_date(sixty_days)
    dates = list(days)
    runs = [[dates[1]]] + [[dates[i], dates[i + 3]] for i in range(0, 57, 2)] + [[dates[58]]]
    assert sorted(d for run in runs for d in run) == dates
    root = tmp_path / "root"
    (root / "landing_zone").mkdir(parents=True)
    seen = 0
    for n, run in enumerate(runs):
        for day in run:
            for path in days[day]:
                shutil.copy(path, root / "landing_zone")
        assert minilake.run(root, marts=False).ok, run
        applied, seen = replayed(root, seen)
        for source in PREFIXES:
            mine = applied[applied["source"] == source]
            want = archived_on_or_after(root, source, min(run)) if n else \
                archived_on_or_after(root, source, run[0])
            assert set(mine["file"]) == want, f"run {n} ({run}): {source} replayed"
            if n and len(run) == 2 or n == len(runs) - 1:
                late = mine[mine["file_date"] == min(run)]
                assert late["event"].tolist() == ["late"], f"run {n}: {source}"
                assert set(mine.loc[mine["file_date"] > min(run), "event"]) == {"replay"}
        if n % 10 == 9 or n == len(runs) - 1:
            assert_matches_raw(table_contents(root), root / "archive", f"after run {n}",
                               archived=True)


# the tests of the one sixty_applied (a module fixture: one worker makes it, not each)
SIXTY = pytest.mark.xdist_group("sixty_applied")


@pytest.fixture(scope="module")
def sixty_applied(sixty_days, tmp_path_factory) -> Path:
    """The sixty days applied in one run, with no maintenance (a file per day's history)."""
    root = tmp_path_factory.mktemp("sixty_applied")
    shutil.copytree(sixty_days, root / "landing_zone")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(upkeep, "COMPACT_AT", 10**6)
        assert minilake.run(root, marts=False).ok
    return root


@SIXTY
@pytest.mark.parametrize("back", [6, 59])
def test_a_resent_file_replays_only_the_files_from_its_own_date_on(back, sixty_applied,
                                                                    tmp_path):
    """A file resent ``back`` days before the last (each source's, with the next day's rows:
    changed, new and missing keys) repairs from its own date: the files before it are not
    replayed, the tables equal the archive (the resent contents) applied in date order."""
    root = tmp_path / "root"
    shutil.copytree(sixty_applied, root)
    seen = len(read_log(Layout.of(root)))
    dates = list(by_date(root / "archive" / "customer"))
    day = dates[-1 - back]
    following = dates[-back] if back else dates[-2]
    for source, prefix in PREFIXES.items():
        old = next(p for p in raw.days(root / "archive" / source, prefix)
                   if raw.file_date(p) == day)
        new = next(p for p in raw.days(root / "archive" / source, prefix)
                   if raw.file_date(p) == following)
        (root / "landing_zone" / old.name).write_bytes(new.read_bytes())
    assert minilake.run(root, marts=False).ok
    applied, _ = replayed(root, seen)
    for source in PREFIXES:
        mine = applied[applied["source"] == source]
        assert set(mine["file"]) == archived_on_or_after(root, source, day), source
        assert mine.loc[mine["file_date"] == day, "event"].tolist() == ["resent"], source
    assert_matches_raw(table_contents(root), root / "archive", f"resent {day}", archived=True)


# --- maintenance (issue 39: compaction as data-unchanged commits) ---------------------------

def live_files(root: Path, source: str) -> list[dict]:
    return pa.table(DeltaTable(str(root / "tables" / source)).get_add_actions(flatten=True)
                    ).to_pylist()


def some_versions(root: Path, source: str) -> dict[int, pd.DataFrame]:
    """Every seventh version of a table and its last, as read now."""
    last = int(minilake.versions(source, root)["version"].max())
    return {v: minilake.read_table(source, root=root, version=v)
            for v in sorted({*range(0, last + 1, 7), last})}


@SIXTY
def test_maintenance_compacts_small_files_and_every_version_reads_the_same(sixty_applied,
                                                                          tmp_path):
    """Sixty days applied in one run leave a history file per day in customer and product: a
    maintenance puts each month's together (one per month of closing), in one data-unchanged
    commit per table; earlier versions (every seventh, and the last) and as_of reads give the
    rows they gave."""
    root = tmp_path / "root"
    shutil.copytree(sixty_applied, root)
    dates = list(by_date(root / "archive" / "customer"))
    before = {s: some_versions(root, s) for s in ("customer", "product")}
    as_of = {(s, d): minilake.read_table(s, root=root, as_of=d)
             for s in PREFIXES for d in dates[::7]}
    counts = {s: len(live_files(root, s)) for s in PREFIXES}
    lines = minilake.maintain(root)
    for source in ("customer", "product"):
        files = live_files(root, source)
        history = [f for f in files if not f["partition.is_current"]]
        months = {f["max.expiry_date"].strftime("%Y-%m") for f in history}
        assert len(history) == len(months) <= 3, (source, len(history), months)
        assert counts[source] >= 50 and len(files) <= 4, (source, counts[source], len(files))
        assert any(line.startswith(f"maintain: {source}: {counts[source]} data files -> "
                                   f"{len(files)}") for line in lines), lines
        for version, frame in before[source].items():
            pd.testing.assert_frame_equal(minilake.read_table(source, root=root,
                                                              version=version), frame,
                                          obj=f"{source} version {version}")
        compacted = minilake.versions(source, root).iloc[-1]
        assert compacted["operation"] == "COMPACT" and compacted["files"] == ""
    for (source, day), frame in as_of.items():
        pd.testing.assert_frame_equal(minilake.read_table(source, root=root, as_of=day), frame,
                                      obj=f"{source} as of {day}")
    # a second maintenance finds nothing to compact
    assert all("->" not in line for line in minilake.maintain(root))


@SIXTY
def test_compacted_history_is_in_the_order_versions_began_so_an_old_date_reads_little(
        sixty_applied, tmp_path, monkeypatch):
    """A compacted history file holds its versions in the order they began, in row groups of
    ``HISTORY_ROW_GROUP`` rows (64 here, so that sixty small days make several): by their
    statistics, a read as of the first day opens few of them (the versions valid then), and
    it gives the rows it gave before. In key order every row group held versions of every age,
    and such a read opened every one of the files closing after the date."""
    from minilake.load import datafiles

    monkeypatch.setattr(datafiles, "HISTORY_ROW_GROUP", 64)
    root = tmp_path / "root"
    shutil.copytree(sixty_applied, root)
    first = min(by_date(root / "archive" / "customer"))
    before = minilake.read_table("customer", root=root, as_of=first)
    minilake.maintain(root)
    groups, opened = 0, 0
    for f in live_files(root, "customer"):
        if f["partition.is_current"]:
            continue
        meta = pq.ParquetFile(root / "tables" / "customer" / f["path"]).metadata
        column = meta.schema.to_arrow_schema().get_field_index("effective_from")
        began = [(meta.row_group(i).column(column).statistics.min,
                  meta.row_group(i).column(column).statistics.max,
                  meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
        assert all(rows <= 64 for _, _, rows in began), f["path"]
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(began)), (f["path"], began)
        groups += len(began)
        if pd.Timestamp(f["max.expiry_date"]).date() > first:   # what a read as of it opens
            opened += sum(low <= first for low, _, _ in began)
    assert groups >= 20 and opened <= groups // 2, (opened, groups)
    pd.testing.assert_frame_equal(minilake.read_table("customer", root=root, as_of=first),
                                  before)


@SIXTY
def test_a_repair_after_maintenance_rewrites_only_the_recent_month(sixty_applied, tmp_path):
    """After compaction, a file resent for the last day rewrites the current files and the
    history closed in the last day's month only: the earlier months' history files stay as
    they were, and the tables still equal in-order arrival of the archive."""
    root = tmp_path / "root"
    shutil.copytree(sixty_applied, root)
    minilake.maintain(root)
    dates = list(by_date(root / "archive" / "customer"))
    month = dates[-1].strftime("%Y-%m")
    older = {f["path"] for f in live_files(root, "customer")
             if not f["partition.is_current"] and f["max.expiry_date"].strftime("%Y-%m") < month}
    assert len(older) == 2
    last = root / "archive" / "customer" / f"customer_{dates[-1]:%Y%m%d}.csv"
    frame = raw.customers(last)
    frame.iloc[:-3].to_csv(root / "landing_zone" / last.name, index=False, quoting=1)
    assert minilake.run(root, marts=False).ok
    assert older <= {f["path"] for f in live_files(root, "customer")}
    assert_matches_raw(table_contents(root), root / "archive", "resent after maintenance",
                       archived=True)


def test_a_run_maintains_a_table_once_a_group_reaches_the_threshold(sixty_days, tmp_path):
    """One run a day: when the history closed this month reaches 10 small files, the run
    compacts it and says so in one line; the tables still equal the raw files."""
    days = by_date(sixty_days)
    root = tmp_path / "root"
    (root / "landing_zone").mkdir(parents=True)
    said = []
    for n, paths in enumerate(days.values()):
        if n == 12:
            break
        for path in paths:
            shutil.copy(path, root / "landing_zone")
        said += [(n, line) for line in minilake.run(root, marts=False).lines()
                 if line.startswith("maintain:")]
    # day n adds the history file n (the first day closes nothing): the tenth is on day 10
    assert [n for n, _ in said if "customer" in _] == [10], said
    history = [f for f in live_files(root, "customer") if not f["partition.is_current"]]
    assert len(history) == 2, "the compacted ten, and day 11's"
    assert_matches_raw(table_contents(root), root / "archive", "maintained", archived=True)
