"""The snapshot safety valve at its threshold: a customer snapshot that would expire more than
half of the current keys is quarantined with a reason naming the counts, exactly half or
fewer is applied, and ``--allow-mass-delete`` lets any cut through. Every count expected is
computed here from the snapshot files' rows."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from support.commands import minilake as minilake_cli

import minilake
from minilake.lake.layout import Layout
from minilake.lake.logs import read_log

FIRST, SECOND = "customer_20241009.csv", "customer_20241010.csv"


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def write_rows(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL,
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def base(small_root, tmp_path_factory) -> dict:
    """A root holding the small world's first customer snapshot alone, cut to an even number
    of customers (so that exactly half of them can be expired), and the world's second
    snapshot's rows: the natural next day, with its own new, changed and gone customers."""
    root = tmp_path_factory.mktemp("valve") / "root"
    (root / "landing_zone").mkdir(parents=True)
    first = read_rows(small_root / "landing_zone" / FIRST)
    first = first[: len(first) // 2 * 2]
    write_rows(root / "landing_zone" / FIRST, first)
    result = minilake.run(root, marts=False)
    outcome = result.ingest.files[0]
    assert result.ok and outcome.rows_rejected == 0 and outcome.rows_loaded == len(first)
    return {"root": root, "first": first,
            "second": read_rows(small_root / "landing_zone" / SECOND)}


def snapshot_expiring(base: dict, expire: int) -> list[dict]:
    """The second snapshot with as many of the first one's customers dropped from it, or
    given back their first row, as make exactly ``expire`` of them absent."""
    current = [r["customer_id"] for r in base["first"]]
    rows = list(base["second"])
    kept = {r["customer_id"] for r in rows}
    absent = [c for c in current if c not in kept]
    if len(absent) > expire:                   # give some back, as they were
        back = set(absent[: len(absent) - expire])
        rows += [r for r in base["first"] if r["customer_id"] in back]
    else:                                      # drop more of those still there
        drop = set([c for c in current if c in kept][: expire - len(absent)])
        rows = [r for r in rows if r["customer_id"] not in drop]
    assert len(set(current) - {r["customer_id"] for r in rows}) == expire
    return rows


def expected_counts(base: dict, rows: list[dict]) -> dict[str, int]:
    """New, changed and expired keys of a snapshot against the first one, from the rows."""
    before = {r["customer_id"]: r for r in base["first"]}
    after = {r["customer_id"]: r for r in rows}
    return {"inserted": len(after.keys() - before.keys()),
            "updated": sum(before[k] != after[k] for k in after.keys() & before.keys()),
            "expired": len(before.keys() - after.keys())}


def land(base: dict, tmp_path: Path, rows: list[dict]) -> Path:
    root = tmp_path / "root"
    shutil.copytree(base["root"], root)
    write_rows(root / "landing_zone" / SECOND, rows)
    return root


def current_ids(root: Path, day: str) -> set[str]:
    table = minilake.read_table("customer", as_of=day, root=root)
    return {str(i) for i in table["customer_id"]}


def assert_applied(root: Path, outcome, base: dict, rows: list[dict]) -> None:
    want = expected_counts(base, rows)
    assert outcome.status == "applied", outcome.reason
    assert (outcome.rows_rejected, outcome.rows_loaded) == (0, len(rows))
    got = {k: getattr(outcome, k) for k in want}
    assert got == want
    assert current_ids(root, "2024-10-10") == {r["customer_id"] for r in rows}


@pytest.mark.parametrize("over_half", [0, -1], ids=["exactly half", "half - 1"])
def test_expiring_half_of_the_current_keys_or_fewer_is_applied(base, tmp_path, over_half):
    current = len(base["first"])
    rows = snapshot_expiring(base, current // 2 + over_half)
    root = land(base, tmp_path, rows)
    result = minilake.run(root, marts=False)
    assert result.ok, "quarantined: " + "; ".join(f.reason for f in result.ingest.quarantined)
    assert_applied(root, result.ingest.files[0], base, rows)


def test_expiring_one_more_than_half_is_quarantined_naming_the_counts(base, tmp_path):
    current = len(base["first"])
    expire = current // 2 + 1
    root = land(base, tmp_path, snapshot_expiring(base, expire))
    result = minilake.run(root, marts=False)
    assert not result.ok, "applied: " + "; ".join(f.line() for f in result.ingest.files)
    [outcome] = result.ingest.quarantined
    counts = f"would expire {expire} of {current} current keys"
    assert outcome.file == SECOND and counts in outcome.reason, outcome.reason
    reason = root / "quarantine" / "customer" / f"{SECOND}.reason.txt"
    assert counts in reason.read_text() and "--allow-mass-delete" in reason.read_text()
    assert current_ids(root, "2024-10-10") == {r["customer_id"] for r in base["first"]}
    assert not (root / "error_reports" / "errors_customer_20241010.csv").exists()


@pytest.mark.parametrize("expiring", [lambda n: n // 2 + 1, lambda n: n - 1],
                         ids=["half + 1", "all but one"])
def test_allow_mass_delete_lets_any_cut_through(base, tmp_path, expiring):
    rows = snapshot_expiring(base, expiring(len(base["first"])))
    root = land(base, tmp_path, rows)
    done = minilake_cli("run", "--root", str(root), "--allow-mass-delete")
    assert done.returncode == 0, done.stdout + done.stderr
    log = read_log(Layout.of(root))
    row = log[log["file"] == SECOND].iloc[0]
    assert row["status"] == "applied"
    want = expected_counts(base, rows)
    assert {k: int(row[k]) for k in want} == want
    assert current_ids(root, "2024-10-10") == {r["customer_id"] for r in rows}
