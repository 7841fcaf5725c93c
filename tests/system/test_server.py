"""The job server (issue 15, README, On a schedule), started as a real uvicorn process on
127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
import schemathesis
from hypothesis import given, settings
from schemathesis.checks import not_a_server_error
from support.arrivals import expected_tables
from support.commands import HUNG_AFTER

import minilake
from minilake.contract.sources import SOURCES

pytestmark = pytest.mark.xdist_group("server")
TOKEN = "srv-" + secrets.token_hex(12)
PROTECTED = [("POST", "/jobs/run", {}), ("POST", "/jobs/pull", {"source": "sales",
                                                                 "date": "2024-10-09"}),
             ("POST", "/jobs/export", {"table": "sales"}), ("GET", "/status", None),
             ("GET", "/tables/customer", None), ("GET", "/reports/", None),
             ("GET", "/reports/runs/20241009T000000000000Z.html", None), ("GET", "/jobs", None),
             ("GET", f"/jobs/{'0' * 32}", None), ("GET", f"/jobs/{'0' * 32}/log", None),
             ("DELETE", f"/jobs/{'0' * 32}", None)]
WAIT = {"wait": "true"}             # the synchronous form: the answer once the job is done


class Server:
    def __init__(self, root: Path, env: dict | None = None, start_within: float = HUNG_AFTER):
        self.root = root
        minilake.init(root)                  # a root minilake made (a no-op for one already)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "minilake", "serve", "--root", str(root), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "MINILAKE_SERVER_TOKEN": TOKEN, **(env or {})})
        first = self.first_line(start_within)
        self.url = first.rsplit(" on ", 1)[1].strip()
        self.client = httpx.Client(base_url=self.url, timeout=HUNG_AFTER,
                                   headers={"Authorization": f"Bearer {TOKEN}"})

    def first_line(self, deadline: float) -> str:
        """The line naming the URL; a server that says nothing by the deadline (a hang
        guard: a loaded machine is given plenty) or says something else fails the test with
        its stderr."""
        said = select.select([self.process.stdout], [], [], deadline)[0]
        first = self.process.stdout.readline() if said else ""
        if not first.startswith("minilake job server: serving"):
            self.process.kill()
            pytest.fail(f"the job server did not come up within {deadline:g} s: stdout "
                        f"{first!r}, stderr {self.process.communicate()[1][-2000:]!r}")
        return first

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=HUNG_AFTER)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the job server did not stop within {HUNG_AFTER} s of SIGTERM")


@pytest.fixture(scope="module")
def server(committed, tmp_path_factory):
    root = tmp_path_factory.mktemp("server") / "root"
    shutil.copytree(committed / "landing_zone", root / "landing_zone")
    running = Server(root)
    yield running
    running.stop()


def test_without_a_token_it_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MINILAKE_SERVER_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "minilake", "serve", "--root", str(tmp_path),
                           "--port", "0"], env=env, capture_output=True, text=True,
                          timeout=HUNG_AFTER)
    assert done.returncode == 2
    assert done.stderr == ("minilake serve: refusing to start without a token: set "
                           "MINILAKE_SERVER_TOKEN (clients send 'Authorization: Bearer "
                           "<token>')\n")


def test_every_route_but_health_wants_the_token(server):
    assert httpx.get(f"{server.url}/health", timeout=HUNG_AFTER).json() == {"status": "ok"}
    for method, path, body in PROTECTED:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            answer = httpx.request(method, server.url + path, json=body, headers=headers,
                                   timeout=HUNG_AFTER)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.json() == {"detail": "missing or wrong bearer token"}
    assert "/jobs/run" in httpx.get(f"{server.url}/openapi.json",
                                    timeout=HUNG_AFTER).json()["paths"]


def test_run_then_tables_page_by_page_equal_read_table(server):
    answer = server.client.post("/jobs/run", params=WAIT)
    assert answer.status_code == 200 and answer.json()["ok"]
    assert answer.json()["lines"][0] == "split: 21 file(s) archived"
    want = minilake.read_table("customer", as_of="2024-10-12", root=server.root)
    rows, page = [], 1
    while True:
        got = server.client.get("/tables/customer", params={"as_of": "2024-10-12",
                                                            "page": page, "page_size": 2000})
        if got.status_code == 404:
            break
        assert got.status_code == 200
        rows += got.json()
        page += 1
    assert page == -(-len(want) // 2000) + 1
    back = pd.DataFrame(rows)
    for column in ("date_of_birth", "effective_from", "expiry_date"):
        back[column] = pd.to_datetime(back[column]).dt.date
    for column in ("customer_id", "row_hash"):          # identifiers: strings of their digits
        back[column] = back[column].map(int)
    want = want.astype(object).where(want.notna(), None)
    assert back.astype(object).where(back.notna(), None).to_dict("records") == \
        want.to_dict("records")


def test_the_run_reports_are_served_as_written(server):
    """docs/quality.md: the index and each run's page and data, byte for byte as under
    reports/; a name that is no run report's is 404, not a path."""
    assert server.client.post("/jobs/run", params=WAIT).json()["ok"]
    pages = sorted((server.root / "reports" / "runs").glob("*.html"))
    assert pages
    index = server.client.get("/reports/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert index.content == (server.root / "reports" / "index.html").read_bytes()
    for page in pages:
        assert f'href="runs/{page.name}"' in index.text
        for path in (page, page.with_suffix(".json")):
            got = server.client.get(f"/reports/runs/{path.name}")
            assert got.status_code == 200 and got.content == path.read_bytes()
    for name in ("..%2Findex.html", "x.html", "20241009T000000000000Z.csv"):
        assert server.client.get(f"/reports/runs/{name}").status_code == 404


def test_status_and_export_jobs(server):
    """Status and export answer with the numbers the sample week's raw files make (the tests'
    oracle, tests/support/arrivals.py): seven files a source, no error, every version counted."""
    ran = server.client.post("/jobs/run", params=WAIT)
    assert ran.status_code == 200 and ran.json()["ok"], ran.text
    status = server.client.get("/status").json()
    made = expected_tables(server.root / "archive", archived=True)
    want = [{"source": source, "archived": 7, "applied": 7, "quarantined": 0, "superseded": 0,
             "late": 0, "resent": 0, "rebuilds": 0, "repairs": 0, "last_date": "2024-10-15",
             "current_rows": int(versions["is_current"].sum()), "all_versions": len(versions),
             "rejected_rows": 0} for source, versions in made.items()]
    assert [{k: s[k] for k in want[0]} for s in status["sources"]] == want
    assert (status["erasures"], status["pulls"]) == ([], [])
    done = server.client.post("/jobs/export", json={"table": "sales", "current": True,
                                                    "format": "parquet"}, params=WAIT)
    assert done.status_code == 200, done.text
    assert done.json()["path"] == "exports/sales_current.parquet"
    assert done.json()["rows"] == want[2]["current_rows"]


def as_javascript(text: str):
    """``JSON.parse``: every number a double, integers included."""
    return json.loads(text, parse_int=float)


DAY = re.compile(r"\d{4}-\d\d-\d\d")


def test_pages_and_status_read_as_doubles_keep_ids_dates_and_money(server):
    assert server.client.post("/jobs/run", params=WAIT).status_code == 200
    want = minilake.read_table("sales", as_of="2024-10-12", root=server.root)
    assert (want["customer_id"] > 2**53).any()
    got = server.client.get("/tables/sales", params={"as_of": "2024-10-12", "page": 1,
                                                     "page_size": 100_000})
    rows = as_javascript(got.text)
    assert [r["customer_id"] for r in rows] == [str(v) for v in want["customer_id"]]
    assert [r["row_hash"] for r in rows] == [str(v) for v in want["row_hash"]]
    assert [r["sale_date"] for r in rows] == [d.isoformat() for d in want["sale_date"]]
    for money in ("total_price", "price_per_unit"):
        assert [r[money] for r in rows] == [round(v, 2) for v in want[money]]
    delivery = as_javascript(server.client.get("/tables/customer", params={
        "date": "2024-10-12", "page": 1, "page_size": 100_000}).text)
    customers = minilake.read_table("customer", as_of="2024-10-12", root=server.root)
    assert [r["customer_id"] for r in delivery] == [str(v) for v in customers["customer_id"]]
    assert all(DAY.fullmatch(r["date_of_birth"]) for r in delivery)
    status = as_javascript(server.client.get("/status").text)
    assert {s["last_date"] for s in status["sources"]} == {"2024-10-15"}
    assert all(isinstance(s["current_rows"], float) for s in status["sources"])


def test_pulling_from_the_job_server_gives_its_delivery(server, tmp_path, monkeypatch):
    """docs/formats.md, the pull protocol between two minilakes: ids arrive as strings, and land as
    the same values."""
    assert server.client.post("/jobs/run", params=WAIT).status_code == 200
    monkeypatch.setenv("MINILAKE_API_TOKEN", f"Bearer {TOKEN}")
    day = "2024-10-12"
    (tmp_path / "landing_zone").mkdir()
    for source in ("customer", "product", "sales"):
        assert minilake.pull(source, day, tmp_path, f"{server.url}/tables", progress=False).ok
    landed = as_javascript((tmp_path / "landing_zone" / "customer_20241012.json").read_text())
    there = minilake.read_table("customer", as_of=day, root=server.root)
    assert [r["customer_id"] for r in landed] == [str(v) for v in there["customer_id"]]
    assert minilake.run(tmp_path).ok
    for name, key in (("customer", "customer_id"), ("product", "product_id"),
                      ("sales", "sale_id")):
        columns = [*SOURCES[name].columns, "row_hash"]
        here = minilake.read_table(name, as_of=day, root=tmp_path)[columns]
        there = minilake.read_table(name, as_of=day, root=server.root)[columns]
        pd.testing.assert_frame_equal(here.sort_values(key).reset_index(drop=True),
                                      there.sort_values(key).reset_index(drop=True), obj=name)


def test_bad_parameters_get_422_and_unknown_tables_404(server):
    bad = server.client.get("/tables/customer", params={"as_of": "2024-13-01"})
    assert bad.status_code == 422 and "as_of" in bad.json()["detail"]
    assert server.client.get("/tables/customer", params={"page": 0}).status_code == 422
    missing = server.client.get("/tables/stock")
    assert missing.status_code == 404 and "no table 'stock'" in missing.json()["detail"]
    assert server.client.post("/jobs/pull", json={"source": "stock", "date": "2024-10-09"}
                              ).status_code == 422
    assert server.client.post("/jobs/export", json={"table": "../x"}).status_code == 422


def test_a_job_while_another_process_holds_the_root_gets_409(server):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from minilake.lake.lock import hold\nwith hold(Path(sys.argv[1]), 'test holder'):\n"
         "    print('held', flush=True); time.sleep(600)", str(server.root)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for params in (WAIT, {}):       # refused before it is queued, in either form
            busy = server.client.post("/jobs/run", params=params)
            assert busy.status_code == 409
            assert f"pid {holder.pid} (test holder" in busy.json()["detail"]
    finally:
        holder.kill()
        holder.wait()
    assert server.client.post("/jobs/run", params=WAIT).status_code == 200


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzed")
    minilake.generate(root, days=2, customers=50, seed=3, landing_only=True)
    running = Server(root)
    yield running
    running.stop()


def no_traceback(ctx, response, case) -> None:
    assert "Traceback" not in response.text, response.text[:500]


def test_fuzzed_from_the_openapi_document_no_5xx_no_traceback(fuzzed):
    """Every operation of ``/openapi.json``, with generated parameters and bodies (with and
    without the token): no 5xx, no traceback. (schemathesis' own pytest loader does not work
    with pytest 9, so its strategies are driven by hypothesis here.)"""
    api = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 13        # reports: /reports/, /reports/index.html, a run's;
    #                                     jobs: three kinds, the list, a job, its log, cancel
    for operation in operations:
        @settings(max_examples=25)
        @given(case=operation.as_strategy())
        def check(case):
            for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
                case.call_and_validate(base_url=fuzzed.url, headers=headers,
                                       checks=[not_a_server_error, no_traceback])
        check()
