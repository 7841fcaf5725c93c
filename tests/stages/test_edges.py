"""Hostile inputs at the edges (issue 34): erasures that find nobody or hold a bad entry, data
under names no source claims, exports beside an erasure, links and special files in the
landing zone, JSON nested without end, a sparse file of zeros, EXPLAIN ANALYZE of a write.

Every case runs the real thing (the command line as a process, real symbolic links, FIFOs and
sparse files) and checks that nothing answers with a traceback, that what is good still goes
through, that nothing outside the root is read, and that no erased value is left anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.commands import HUNG_AFTER, finish, start
from support.commands import minilake as cli
from test_erasure import scan

import minilake
from minilake.formats.readers import MAX_JSON_DEPTH, json_depth
from minilake.generate import generate
from minilake.lake import logs
from minilake.lake.layout import Layout


@pytest.fixture(scope="module")
def applied(tmp_path_factory) -> Path:
    """Three days of a small world applied: a lake to copy."""
    root = tmp_path_factory.mktemp("edges") / "root"
    generate(root, start="2024-10-09", days=3, customers=120, seed=34, landing_only=True)
    assert minilake.run(root).ok
    return root


@pytest.fixture
def lake(applied, tmp_path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(applied, root)
    return root


def one_customer(root: Path) -> tuple[str, set[str]]:
    """A current customer's id, and the personal values only they have."""
    table = minilake.read_table("customer", root=root)
    mine = table[table["customer_id"] == table.loc[table["is_current"], "customer_id"].iloc[0]]
    others = table[table["customer_id"] != mine["customer_id"].iloc[0]]
    values = {v for c in ("email", "phone_number", "address") for v in mine[c] if v}
    values -= {v for c in ("email", "phone_number", "address") for v in others[c] if v}
    return str(mine["customer_id"].iloc[0]), values


def request(root: Path, day: str, entries: list) -> None:
    (root / "landing_zone" / f"erasure_requests_{day}.json").write_text(json.dumps(entries))


def test_an_erasure_that_names_nobody_known_changes_nothing_and_says_so(lake):
    before = {s: minilake.versions(s, root=lake) for s in ("customer", "product", "sales")}
    rows = minilake.read_table("customer", root=lake)
    request(lake, "20241020", [{"customer_id": "1"}, {"email": "nobody@example.invalid"}])
    done = cli("run", "--root", str(lake))
    assert done.returncode == 0, done.stderr
    assert ("(0 customer(s) erased; 2 named nobody known; nothing changed)" in done.stdout), \
        done.stdout
    for source, versions in before.items():       # no rebuild, no purge
        assert minilake.versions(source, root=lake)["version"].tolist() == \
            versions["version"].tolist(), source
    assert minilake.read_table("customer", root=lake).equals(rows)
    logged = logs.read_erasure_log(Layout.of(lake))
    assert logged["history_from_version"].isna().all() and len(logged) == 2
    assert "customer_id (not found)" in set(logged["named_by"])


def test_a_bad_entry_is_reported_and_the_good_ones_are_applied(lake):
    victim, values = one_customer(lake)
    request(lake, "20241020", [{"customer_id": victim}, {"emial": "typo@example.org"},
                               ["not", "an", "object"], {"customer_id": "not-a-number"}])
    done = cli("run", "--root", str(lake))
    assert done.returncode == 0, done.stderr
    assert "4 read, 1 loaded, 3 rejected" in done.stdout and "(1 customer(s) erased" in \
        done.stdout, done.stdout
    report = (lake / "error_reports" / "errors_erasure_requests_20241020.csv").read_text()
    assert "unexpected key 'emial'" in report and "not an object but an array" in report
    assert "customer_id: not an integer 'not-a-number'" in report
    assert not (lake / "quarantine").exists()
    assert scan(lake, values) == []


def test_an_erasure_reaches_files_under_names_no_source_claims(lake):
    """A customer export under another name waits in the landing zone (it matches no
    source): rewritten field by field. An unreadable customer file in quarantine that holds
    the customer (JSON nested too deep to parse): removed, said."""
    victim, values = one_customer(lake)
    shutil.copy(lake / "archive" / "customer" / "customer_20241011.csv",
                lake / "landing_zone" / "customer_2024-10-20.csv")
    table = minilake.read_table("customer", root=lake)
    row = table[table["customer_id"] == int(victim)].iloc[-1]
    deep = "[" * 100 + json.dumps({"customer_id": victim, "email": row["email"]}) + "]" * 100
    (lake / "landing_zone" / "customer_20241012.json").write_text(deep)
    assert cli("run", "--root", str(lake)).returncode == 1          # the deep one quarantined
    assert scan(lake, values), "the data lies in both before the erasure"
    request(lake, "20241020", [{"customer_id": victim}])
    done = cli("run", "--root", str(lake))
    assert done.returncode == 0, done.stderr
    assert "removed quarantine/customer/customer_20241012.json" in done.stderr
    assert scan(lake, values) == []
    rewritten = (lake / "landing_zone" / "customer_2024-10-20.csv").read_text()
    assert victim in rewritten and "[erased]" in rewritten


@pytest.mark.parametrize("then", ["resumed", "killed and run again"])
def test_an_export_cannot_run_during_an_erasure_nor_bring_the_data_back(lake, then):
    """The erasure stopped right after it scrubbed exports/ (it holds the root): an export
    then is refused at once, naming it; once the erasure is over (resumed, or killed there
    and run again), an export holds no erased value."""
    victim, values = one_customer(lake)
    assert minilake.export("customer", format="csv", root=lake).rows
    request(lake, "20241020", [{"customer_id": victim}])
    erasing = start("run", "--root", str(lake),
                    env={"MINILAKE_PAUSE_AT": "erasure.outputs_scrubbed"})
    deadline = time.monotonic() + HUNG_AFTER
    while psutil.Process(erasing.pid).status() != psutil.STATUS_STOPPED:
        assert erasing.poll() is None, "the run ended without pausing after the scrub"
        assert time.monotonic() < deadline, f"not paused after the scrub in {HUNG_AFTER} s"
        time.sleep(0.05)
    refused = cli("export", "customer", "--format", "csv", "--root", str(lake))
    assert refused.returncode == 2 and f"pid {erasing.pid}" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    if then == "resumed":
        erasing.send_signal(signal.SIGCONT)
        assert finish(erasing).returncode == 0
    else:
        erasing.kill()
        finish(erasing)
        assert cli("run", "--root", str(lake)).returncode == 0
    assert cli("export", "customer", "--format", "csv", "--root", str(lake)).returncode == 0
    assert scan(lake, values) == []


def test_links_special_files_and_folders_in_the_landing_zone_are_refused_not_followed(
        lake, tmp_path):
    landing = lake / "landing_zone"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    secret = elsewhere / "customer_20241013.csv"
    shutil.copy(lake / "archive" / "customer" / "customer_20241011.csv", secret)
    secret.write_text(secret.read_text().replace("\n", "\nSECRET-LINE\n", 1))
    generate(tmp_path / "more", start="2024-10-12", days=1, customers=120, seed=34,
             landing_only=True)
    good = sorted((tmp_path / "more" / "landing_zone").iterdir())
    for path in good:
        if not path.name.startswith("customer"):
            shutil.copy(path, landing / path.name)
    (landing / "customer_20241012.csv").symlink_to("/etc/passwd")
    (landing / "customer_20241013.csv").symlink_to(secret)
    (landing / "customer_20241014.csv").symlink_to(tmp_path / "nothing-there")
    (landing / "customer_20241015.csv").symlink_to(landing / "customer_20241015.csv")
    os.mkfifo(landing / "products_20241013.json")
    (landing / "sales_20241013.txt").mkdir()
    done = cli("run", "--root", str(lake))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    refused = [line for line in done.stdout.splitlines() if "not a regular file" in line]
    assert len(refused) == 6, done.stdout
    assert {"symbolic link", "FIFO", "folder"} <= {w for line in refused for w in (
        "symbolic link", "FIFO", "folder") if w in line}
    assert "product/products_20241012.json: " in done.stdout      # the good files went in
    assert "sales/sales_20241012.txt" in done.stdout
    everything = done.stdout + done.stderr + "".join(
        p.read_text(errors="replace") for p in lake.rglob("*") if p.is_file()
        and not p.is_symlink() and p.suffix in (".txt", ".csv", ".json"))
    assert "root:" not in everything and "SECRET-LINE" not in everything
    assert not list((lake / "archive").rglob("customer_20241013.csv"))
    assert cli("status", "--root", str(lake)).returncode == 0


@pytest.mark.parametrize("zero", [0x660, 0xFF10], ids=["Arabic-Indic", "full-width"])
def test_a_date_written_in_other_digits_is_no_source_s_file(lake, zero):
    """customer_2024-10-12 with the digits of another script: Python's int() reads them, a file
    date must not (it would be a second snapshot of a day already applied, under a name the
    error reports and the archive cannot tell from the ASCII one)."""
    name = f"customer_{''.join(chr(zero + int(d)) for d in '20241012')}.csv"
    shutil.copy(lake / "archive" / "customer" / "customer_20241011.csv",
                lake / "landing_zone" / name)
    result = minilake.run(lake)
    assert result.ok
    assert f"{name} matches no source" in "\n".join(result.lines())
    assert (lake / "landing_zone" / name).exists()
    assert not list((lake / "archive").rglob(name))


@pytest.mark.parametrize("where", ["products", "erasure request"])
def test_json_nested_900_levels_is_quarantined_in_one_line_and_later_runs_go_on(lake, where):
    deep = "[" * 900 + "]" * 900
    name = ("products_20241012.json" if where == "products"
            else "erasure_requests_20241012.json")
    (lake / "landing_zone" / name).write_text(deep)
    done = cli("run", "--root", str(lake))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    reason = next((lake / "quarantine").rglob("*.reason.txt")).read_text()
    assert f"nested 900 levels deep, more than the {MAX_JSON_DEPTH}" in reason
    generate(lake / "next", start="2024-10-13", days=1, customers=120, seed=34,
             landing_only=True)
    for path in (lake / "next" / "landing_zone").iterdir():
        shutil.move(path, lake / "landing_zone" / path.name)
    again = cli("run", "--root", str(lake))
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "marts: " in again.stdout


def _depth(value) -> int:
    """The reference: nesting depth by recursion over the parsed value."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


TEXT = st.text(alphabet=st.sampled_from('ab"\\[]{}é\n'), max_size=12)
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                      lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(TEXT, inner, max_size=4), max_leaves=40)


@given(VALUES, st.booleans())
def test_json_depth_without_parsing_equals_the_parsed_depth(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert json_depth(text) == _depth(value)
    assert json_depth(text.encode()) == _depth(value)


def test_a_huge_field_and_a_row_without_end_are_bounded(tmp_path):
    from minilake.formats import readers

    path = tmp_path / "sales_20241009.txt"
    path.write_bytes(b"1~2~P1~1~1.00~1.00~" + b"x" * (3 << 20) + b"\r\n")
    limited = readers.MAX_ROW_BYTES
    try:
        readers.MAX_ROW_BYTES = 1 << 20
        with pytest.raises(readers.UnreadableFile, match="a row longer than 1 MB"):
            readers.read_tilde_lines(path, [f"c{i}" for i in range(7)], block_size=1 << 16)
    finally:
        readers.MAX_ROW_BYTES = limited
    frame = readers.read_tilde_lines(path, [f"c{i}" for i in range(7)], block_size=1 << 16)
    assert len(frame.rows.iloc[0, 6]) == 3 << 20


@pytest.mark.parametrize("name", ["sales_20241012.txt", "customer_20241012.csv",
                                  "products_20241012.json"])
def test_a_2_gb_sparse_file_of_zeros_is_quarantined_in_little_memory(lake, name):
    path = lake / "landing_zone" / name
    with path.open("wb") as handle:
        handle.truncate(2 << 30)                  # a hole: no block of the disk is used
    process = start("run", "--root", str(lake))
    peak = 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    done = finish(process)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "not a text file: a NUL byte at" in done.stderr
    assert peak < 700 << 20, f"peak RSS {peak >> 20} MB"


def test_explain_analyze_of_a_write_is_refused(lake):
    for query in ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
                  "EXPLAIN (FORMAT JSON) DELETE FROM customer", "PRAGMA version",
                  "explain analyze insert into t select 1"):
        done = cli("sql", query, "--root", str(lake))
        assert done.returncode == 2 and "read-only" in done.stderr, (query, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1
    ok = cli("sql", "EXPLAIN ANALYZE SELECT count(*) FROM customer", "--root", str(lake))
    assert ok.returncode == 0, ok.stderr


def test_a_request_resent_with_other_names_erases_them_too(lake):
    """A second request of the same date arrives as the first resent with other content: the
    customers it names are erased as well (it once changed nothing and said so)."""
    table = minilake.read_table("customer", root=lake)
    current = table.loc[table["is_current"], "customer_id"].drop_duplicates()
    first, second = (str(c) for c in current.iloc[:2])
    request(lake, "20241020", [{"customer_id": first}])
    assert "(1 customer(s) erased" in cli("run", "--root", str(lake)).stdout
    request(lake, "20241020", [{"customer_id": second}])
    done = cli("run", "--root", str(lake))
    assert done.returncode == 0 and "(1 customer(s) erased" in done.stdout, done.stdout
    table = minilake.read_table("customer", root=lake)
    for erased in (first, second):
        rows = table[table["customer_id"] == int(erased)]
        assert len(rows) and (rows["first_name"] == "[erased]").all(), erased
    logged = logs.read_erasure_log(Layout.of(lake))
    assert sorted(logged["customer_id"].astype(str)) == sorted([first, second])
