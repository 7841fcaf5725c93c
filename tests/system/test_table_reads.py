"""Table reads pinned to a version (issue 42, docs/server.md, tables), on a real uvicorn
process: cursor pages that a run job's commits in between do not move, the pull protocol
pinned the same way, and whole reads streamed as Arrow, Parquet and NDJSON, plain or
compressed. The judge is ``read_table`` of the pinned version, read here in-process; each
page's cost is counted (row groups read), not timed (benchmarks/server.py times it)."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.commands import HUNG_AFTER
from test_server import TOKEN, Server

import minilake
from minilake.contract.sources import SOURCES
from minilake.inbound import pull as pulling
from minilake.lake import delta
from minilake.lake.layout import Layout
from minilake.outbound import tablepages

KEYS = {"customer": ["customer_id", "effective_from", "expiry_date"],
        "sales": ["sale_id", "effective_from", "expiry_date"]}


def frame_of(records: list[dict], like: pd.DataFrame) -> pd.DataFrame:
    """JSON records back in ``like``'s types (ids come as strings of their digits, dates
    as text), in key order."""
    back = pd.DataFrame(records, columns=list(like.columns))
    for column, kind in like.dtypes.items():
        if column in ("customer_id", "row_hash"):
            back[column] = back[column].map(int)
        elif pd.api.types.is_object_dtype(kind) and len(like) and hasattr(
                like[column].iloc[0], "isoformat"):
            back[column] = pd.to_datetime(back[column]).dt.date
    return back.astype(like.dtypes.to_dict())


def ordered(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame.sort_values(KEYS[name]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reads(committed, tmp_path_factory) -> Server:
    """The sample week's first five days applied, the last two held in ``held/``."""
    root = tmp_path_factory.mktemp("reads") / "root"
    shutil.copytree(committed / "landing_zone", root / "landing_zone")
    (root / "held").mkdir()
    for late in (root / "landing_zone").iterdir():
        if late.stem.endswith(("20241014", "20241015")):
            shutil.move(late, root / "held" / late.name)
    assert minilake.run(root).ok
    server = Server(root)
    yield server
    server.stop()


def test_cursor_pages_read_their_version_while_a_run_job_commits(reads):
    root, client = reads.root, reads.client
    first = client.get("/tables/sales", params={"page_size": 2000})
    assert first.status_code == 200
    version = int(first.headers["minilake-table-version"])
    token = first.headers["minilake-next-cursor"]
    assert first.headers["link"] == f'</tables/sales?cursor={token}>; rel="next"'
    for held in (root / "held").iterdir():
        shutil.move(held, root / "landing_zone" / held.name)
    job = client.post("/jobs/run").json()
    newer = root / "tables" / "sales" / "_delta_log" / f"{version + 1:020d}.json"
    deadline = time.monotonic() + HUNG_AFTER
    while not newer.exists():                   # the job has committed a new day of sales
        assert time.monotonic() < deadline, "the run job committed no sales"
        time.sleep(0.01)
    records, pages = first.json(), 1
    while token:
        got = client.get("/tables/sales", params={"cursor": token})
        assert got.status_code == 200 and got.headers["minilake-table-version"] == str(version)
        assert 0 < len(got.json()) <= 2000
        records += got.json()
        token, pages = got.headers.get("minilake-next-cursor"), pages + 1
    want = minilake.read_table("sales", version=version, root=root)
    assert pages == -(-len(want) // 2000)
    pd.testing.assert_frame_equal(ordered(frame_of(records, want), "sales"),
                                  ordered(want, "sales"))
    while client.get(f"/jobs/{job['id']}").json()["state"] != "succeeded":
        time.sleep(0.05)
    assert minilake.read_table("sales", root=root).shape[0] > len(want)
    bad = client.get("/tables/customer", params={"cursor": first.headers[
        "minilake-next-cursor"]})
    assert bad.status_code == 422 and bad.json()["detail"] == \
        "cursor: given for sales, not customer"
    for forged in ("x", "e30", token or "eyJ"):
        assert client.get("/tables/sales", params={"cursor": forged}).status_code == 422


def test_the_pull_protocol_is_pinned_to_its_first_pages_version(reads, tmp_path):
    """A delivery's pages asked for one by one, a commit between page 1 and the next: every
    page is of the version page 1 named."""
    day = "2024-10-12"
    pages = pulling._Pages(f"{reads.url}/tables", SOURCES["customer"],
                           pd.Timestamp(day).date(), f"Bearer {TOKEN}", pulling.RetryPolicy())
    records = pages.get(1)
    version = int(pages.version)
    last = sorted((reads.root / "archive" / "customer").iterdir())[-1]
    fewer = last.read_bytes().splitlines(keepends=True)[:-50]     # 50 customers gone
    (reads.root / "landing_zone" / "customer_20241020.csv").write_bytes(b"".join(fewer))
    assert reads.client.post("/jobs/run", params={"wait": "true"}).json()["ok"]
    assert delta.delta(Layout.of(reads.root).table("customer")).version() > version
    page = 2
    while (more := pages.get(page)) is not None:
        records += more
        page += 1
    want = minilake.read_table("customer", as_of=day, root=reads.root, version=version)[
        list(SOURCES["customer"].columns)]
    assert [str(r["customer_id"]) for r in records] == [str(v) for v in want["customer_id"]]
    assert len(records) > 1000                          # more than one page


def raw(client, url: str, params: dict, encoding: str | None) -> tuple[bytes, dict]:
    with client.stream("GET", url, params=params, headers={
            "Accept-Encoding": encoding or "identity"}) as answer:
        assert answer.status_code == 200, answer.read()
        return b"".join(answer.iter_raw()), answer.headers


def undone(data: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "zstd":
        return pa.input_stream(pa.py_buffer(data), compression="zstd").read()
    return data


@pytest.mark.parametrize("form", ["arrow", "parquet", "ndjson"])
def test_whole_reads_stream_as_arrow_parquet_and_ndjson_equal_read_table(reads, form):
    for encoding, params, name in ((None, {}, "sales"), ("gzip", {"as_of": "2024-10-12"},
                                                         "customer"),
                                   ("zstd", {"version": 1}, "customer")):
        data, headers = raw(reads.client, f"/tables/{name}", {**params, "format": form},
                            encoding)
        assert headers.get("content-encoding") == encoding
        data = undone(data, encoding)
        want = minilake.read_table(name, root=reads.root, **params)
        if form == "arrow":
            got = pa.ipc.open_stream(data).read_all().to_pandas()
        elif form == "parquet":
            got = pq.read_table(pa.BufferReader(data)).to_pandas()
        else:
            got = frame_of([json.loads(line) for line in data.decode().splitlines()], want)
        pd.testing.assert_frame_equal(ordered(got, name), ordered(want, name), obj=form)


def test_a_page_reads_only_the_row_groups_it_needs(reads, monkeypatch):
    """Every row group is read once over the whole paging, whatever the page number: no page
    reads again what the pages before it read (the group a page goes on in is kept)."""
    read_groups: list[tuple[int, int]] = []
    real = tablepages._rows
    monkeypatch.setattr(tablepages, "_rows", lambda root, read, file, group: (
        read_groups.append((file, group)) or real(root, read, file, group)))
    tablepages._group.cache_clear()
    layout = Layout.of(reads.root)
    cursor = tablepages.Cursor(tablepages.pinned(layout, "sales"), 700)
    per_page = []
    while cursor is not None:
        before = len(read_groups)
        rows, cursor = tablepages.page(layout, cursor)
        per_page.append(len(read_groups) - before)
    groups = [(n, g) for n, f in enumerate(tablepages._files(layout.root, tablepages.pinned(
        layout, "sales"))) for g in range(f.num_row_groups)]
    assert sorted(set(read_groups)) == groups and len(read_groups) == len(groups)
    assert len(per_page) > 50 and sum(per_page) == len(groups)


def test_stream_parameters_that_exclude_each_other_get_422(reads):
    for params in ({"format": "arrow", "page": 1}, {"format": "ndjson", "cursor": "x"},
                   {"cursor": "x", "as_of": "2024-10-12"}, {"format": "csv"}):
        answer = reads.client.get("/tables/sales", params=params)
        assert answer.status_code == 422, params
    assert reads.client.get("/tables/stock", params={"format": "arrow"}).status_code == 404
    for params, name in (({"as_of": "1990-01-01"}, "customer"), ({"date": "1990-01-01"},
                                                                    "customer")):
        empty = reads.client.get(f"/tables/{name}", params=params)    # no row that day
        assert empty.status_code == 200 and empty.json() == []
        assert "minilake-next-cursor" not in empty.headers
    for params in ({"as_of": "2024-10-10"}, {"as_of": "2024-10-10", "format": "ndjson"},
                   {"date": "2024-10-10", "page": 1}):
        undated = reads.client.get("/tables/_ingest_log", params=params)
        assert undated.status_code == 422 and "no versions by date" in undated.text, params
    read = tablepages.pinned(Layout.of(reads.root), "sales")
    for edited in (tablepages.Cursor(read, 10, file=99), tablepages.Cursor(read, 10, group=99),
                   tablepages.Cursor(tablepages.Read("sales", 10**30), 10),
                   tablepages.Cursor(tablepages.Read("_ingest_log", 1, delivery=True), 10)):
        answer = reads.client.get(f"/tables/{edited.read.table}",
                                  params={"cursor": edited.token()})
        assert answer.status_code in (200, 422), (edited, answer.text)
    later = tablepages.Cursor(tablepages.Read("sales", 10**6), 10).token()    # no such version
    answer = reads.client.get("/tables/sales", params={"cursor": later})
    assert answer.status_code == 422 and "has no version 1000000 yet" in answer.json()["detail"]
    assert Path(reads.root).is_dir()
