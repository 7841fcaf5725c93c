"""Deliveries pulled from an HTTP API (issue 13, docs/formats.md, the pull protocol), against real
HTTP servers on
127.0.0.1: pytest-httpserver for the protocol's corners, and the sample API started as its own
process for a week pulled end to end."""

from __future__ import annotations

import json
import secrets
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from support.commands import minilake as cli
from support.commands import sample_api as serving_sample_api
from werkzeug import Response

import minilake
from minilake.inbound.pull import PullError, RetryPolicy
from minilake.lake.layout import Layout

TOKEN = "tok-" + secrets.token_hex(12)            # unique: grep-able in every file and output
DAY = "2024-10-09"
FAST = RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.05, wait_jitter=0.0,
                   retry_after_max=5.0, timeout=5.0)
COLUMNS = ["sale_id", "customer_id", "product_id", "quantity", "price_per_unit", "total_price",
           "sale_date"]



@pytest.fixture(autouse=True)
def a_root(tmp_path):
    """Each test's ``tmp_path`` is a root minilake made (``init``): a pull lands in a root."""
    minilake.init(tmp_path)

@pytest.fixture(autouse=True)
def token(monkeypatch) -> str:
    monkeypatch.setenv("MINILAKE_API_TOKEN", TOKEN)
    monkeypatch.delenv("MINILAKE_API_URL", raising=False)
    return TOKEN


def sale(n: int, quantity: str = "2", price: str = "12.50") -> str:
    """One sale as the API sends it: numbers as JSON numbers, written as a JSON writer
    might (``12.50``, ``25.00`` kept as typed), the id as text with leading zeros."""
    total = f"{int(quantity) * float(price):.2f}"
    return (f'{{"sale_id": "{n:06d}", "customer_id": 100000000000000{n % 10}, '
            f'"product_id": "P1001", "quantity": {quantity}, "price_per_unit": {price}, '
            f'"total_price": {total}, "sale_date": "{DAY}"}}')


def page(*records: str) -> str:
    return "[" + ", ".join(records) + "]"


def expect(server, number: int, oneshot: bool = False, source: str = "sales", day: str = DAY):
    how = server.expect_oneshot_request if oneshot else server.expect_request
    return how(f"/{source}", query_string={"date": day, "page": str(number)},
               headers={"Authorization": TOKEN})


def serve_pages(server, pages: list[str], end: str = "404", **kw) -> None:
    for number, body in enumerate(pages, 1):
        expect(server, number, **kw).respond_with_data(body, content_type="application/json")
    last = expect(server, len(pages) + 1, **kw)
    if end == "404":
        last.respond_with_data("no such page", status=404)
    else:
        last.respond_with_data("[]", content_type="application/json")


def pull(root: Path, server, **kw) -> minilake.inbound.pull.PullResult:
    return minilake.pull("sales", DAY, root, server.url_for("/"), policy=FAST, **kw)


def landed(root: Path) -> Path:
    return root / "landing_zone" / "sales_20241009.json"


@pytest.mark.parametrize("end", ["404", "empty array"])
def test_pages_until_404_or_an_empty_array_land_as_one_file(httpserver, tmp_path, end):
    pages = [page(sale(1), sale(2)), page(sale(3)), page(sale(4), sale(5), sale(6))]
    serve_pages(httpserver, pages, end)
    result = pull(tmp_path, httpserver)
    assert (result.outcome, result.pages, result.records) == ("landed", 3, 6)
    records = json.loads(landed(tmp_path).read_text())
    assert [r["sale_id"] for r in records] == [f"{n:06d}" for n in range(1, 7)]
    # numbers landed exactly as written, not as Python would print them
    assert '"price_per_unit": 12.50' in landed(tmp_path).read_text()
    assert not list((tmp_path / "tables" / ".pull").iterdir())

    assert minilake.run(tmp_path).ok
    table = minilake.read_table("sales", root=tmp_path)
    assert sorted(table["sale_id"]) == [f"{n:06d}" for n in range(1, 7)]
    assert set(table["price_per_unit"]) == {12.5} and set(table["total_price"]) == {25.0}
    report = pd.read_csv(Layout.of(tmp_path).error_report("sales", "20241009_json"))
    assert len(report) == 0 and list(report.columns) == COLUMNS + ["errors"]


def arriving(arrivals: list[tuple[str, float]], answer: Response):
    """A handler answering ``answer`` that notes each request's page and when it came."""
    def handler(request):
        arrivals.append((request.args["page"], time.monotonic()))
        return answer
    return handler


def test_503_and_429_with_retry_after_are_retried(httpserver, tmp_path):
    arrivals: list[tuple[str, float]] = []
    expect(httpserver, 1, oneshot=True).respond_with_data("busy", status=503)
    expect(httpserver, 2, oneshot=True).respond_with_handler(arriving(arrivals, Response(
        "slow down", status=429, headers={"Retry-After": "1"})))
    expect(httpserver, 2, oneshot=True).respond_with_handler(arriving(arrivals, Response(
        page(sale(2)), content_type="application/json")))
    serve_pages(httpserver, [page(sale(1)), page(sale(2))])      # one-shot answers go first
    result = pull(tmp_path, httpserver)
    assert result.outcome == "landed" and result.records == 2
    pages = [dict(r.args)["page"] for r, _ in httpserver.log]
    assert pages == ["1", "1", "2", "2", "3"]
    (_, refused), (_, again) = arrivals
    assert again - refused >= 1.0                   # Retry-After was honoured


def test_a_connection_dropped_mid_page_is_retried(httpserver, tmp_path):
    body = page(sale(1), sale(2)).encode()

    def cut(request):
        def stream():
            yield body[:20]
            raise ConnectionResetError("the test drops the connection")
        return Response(stream(), content_type="application/json",
                        headers={"Content-Length": str(len(body))})

    expect(httpserver, 1, oneshot=True).respond_with_handler(cut)
    serve_pages(httpserver, [body.decode()])
    result = pull(tmp_path, httpserver)
    assert result.outcome == "landed" and result.records == 2
    assert len(httpserver.log) == 3


def test_a_refused_token_fails_at_once_and_lands_nothing(httpserver, tmp_path):
    expect(httpserver, 1).respond_with_data("who are you", status=401)
    with pytest.raises(PullError, match=r"page 1 of http://127\.0\.0\.1:\d+/sales\?date="
                       r"2024-10-09: the API refused the token \(401"):
        minilake.pull("sales", DAY, tmp_path, httpserver.url_for("/"))   # default policy
    assert len(httpserver.log) == 1                 # no retry (the default policy has 6 tries)
    assert not any((tmp_path / "landing_zone").iterdir())


def test_a_server_that_keeps_failing_names_url_and_page_and_lands_nothing(httpserver,
                                                                          tmp_path):
    expect(httpserver, 1).respond_with_data(page(sale(1)), content_type="application/json")
    expect(httpserver, 2).respond_with_data("down", status=500)
    with pytest.raises(PullError) as failed:
        pull(tmp_path, httpserver)
    message = str(failed.value)
    assert "\n" not in message
    assert f"page 2 of {httpserver.url_for('/sales')}?date=2024-10-09" in message
    assert "500" in message and "4 time(s)" in message
    assert len(httpserver.log) == 1 + FAST.attempts
    assert not any((tmp_path / "landing_zone").iterdir())
    assert not list((tmp_path / "tables" / ".pull").iterdir())
    assert len(minilake.pulls(tmp_path)) == 0


def test_nothing_listening_fails_with_the_url(tmp_path):
    from support.seaweed import refusing_port

    with refusing_port() as port, pytest.raises(
            PullError, match=rf"page 1 of http://127\.0\.0\.1:{port}/sales.*ConnectError"):
        minilake.pull("sales", DAY, tmp_path, f"http://127.0.0.1:{port}", policy=FAST)


def test_a_retry_after_longer_than_a_pull_waits_fails_at_once(httpserver, tmp_path):
    expect(httpserver, 1).respond_with_data("later", status=503,
                                            headers={"Retry-After": "3600"})
    with pytest.raises(PullError, match="retry after 3600 s, longer than the 5 s"):
        pull(tmp_path, httpserver)
    assert len(httpserver.log) == 1


def test_a_page_that_is_not_a_json_array_quarantines_the_day(httpserver, tmp_path):
    serve_pages(httpserver, [page(sale(1)), '{"error": "maintenance"}'])
    result = pull(tmp_path, httpserver)
    assert result.outcome == "quarantined" and not result.ok
    assert result.reason.startswith(f"page 2 of {httpserver.url_for('/sales')}?date=")
    assert result.reason.endswith(": not a JSON array but an object")
    quarantine = tmp_path / "quarantine" / "sales"
    assert (quarantine / "sales_20241009.json").read_text() == '{"error": "maintenance"}'
    assert (quarantine / "sales_20241009.json.reason.txt").read_text() == result.reason + "\n"
    assert not any((tmp_path / "landing_zone").iterdir())
    assert list(minilake.pulls(tmp_path)["outcome"]) == ["quarantined"]


def test_a_page_cut_short_without_a_length_is_retried_then_quarantined(httpserver, tmp_path):
    expect(httpserver, 1).respond_with_data('[{"sale_id": "1", ', content_type="text/plain")
    result = pull(tmp_path, httpserver)
    assert result.outcome == "quarantined" and "not JSON" in result.reason
    assert len(httpserver.log) == FAST.attempts


def test_records_with_an_extra_key_make_a_bad_file_and_a_missing_value_a_bad_row(httpserver,
                                                                                tmp_path):
    extra = sale(2)[:-1] + ', "coupon": "X"}'
    serve_pages(httpserver, [page(sale(1), extra)])
    assert pull(tmp_path, httpserver).outcome == "landed"
    run = minilake.run(tmp_path)
    assert [(f.file, f.reason) for f in run.ingest.quarantined] == [
        ("sales_20241009.json", "unexpected key 'coupon'")]

    httpserver.clear()
    missing = sale(4).replace('"quantity": 2, ', "")
    serve_pages(httpserver, [page(sale(3), missing)])
    assert pull(tmp_path, httpserver).outcome == "landed"
    assert minilake.run(tmp_path).ok
    report = pd.read_csv(Layout.of(tmp_path).error_report("sales", "20241009_json"), dtype=str,
                         keep_default_na=False)
    assert list(report["sale_id"]) == ["000004"]
    assert report["errors"].iloc[0].startswith("quantity: required")
    assert list(minilake.read_table("sales", root=tmp_path)["sale_id"]) == ["000003"]


def test_the_token_is_in_no_file_no_log_and_no_output(httpserver, tmp_path):
    expect(httpserver, 1, oneshot=True).respond_with_data("busy", status=503)
    serve_pages(httpserver, [page(sale(1))])
    url = httpserver.url_for("/")
    done = [cli("-v", "pull", "sales", "--date", DAY, "--url", url, "--root", str(tmp_path)),
            cli("-v", "run", "--root", str(tmp_path)),
            cli("status", "--root", str(tmp_path))]
    httpserver.clear()
    expect(httpserver, 1).respond_with_data("no", status=403)
    done.append(cli("-v", "pull", "sales", "--date", "2024-10-09", "--url", url, "--root",
                    str(tmp_path)))
    assert [d.returncode for d in done] == [0, 0, 0, 1]
    assert "the API refused the token (403" in done[-1].stderr
    assert "attempt 2 of" in done[0].stderr                    # the retry was logged
    for d in done:
        assert TOKEN not in d.stdout + d.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 10
    assert not [p for p in files if TOKEN.encode() in p.read_bytes()]


def test_missing_token_or_url_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MINILAKE_API_TOKEN")
    done = cli("pull", "sales", "--date", DAY, "--url", "http://127.0.0.1:9", "--root",
               str(tmp_path))
    assert done.returncode == 2
    assert done.stderr == "minilake pull: no API token: set the environment variable " \
                          "MINILAKE_API_TOKEN\n"
    monkeypatch.setenv("MINILAKE_API_TOKEN", TOKEN)
    done = cli("pull", "sales", "--date", DAY, "--root", str(tmp_path))
    assert done.returncode == 2 and "no API URL" in done.stderr
    done = cli("pull", "stock", "--date", DAY, "--url", "http://127.0.0.1:9", "--root",
               str(tmp_path))
    assert done.returncode == 2 and "no source 'stock'" in done.stderr


def test_pulled_again_unchanged_is_a_no_op_and_changed_is_a_resent_delivery(httpserver,
                                                                          tmp_path):
    serve_pages(httpserver, [page(sale(1), sale(2)), page(sale(3))])
    assert pull(tmp_path, httpserver).outcome == "landed"
    assert pull(tmp_path, httpserver).outcome == "unchanged"         # still in landing
    assert minilake.run(tmp_path).ok
    before = minilake.read_table("sales", root=tmp_path)
    again = pull(tmp_path, httpserver)
    assert (again.outcome, again.reason) == ("unchanged", "archive/sales/sales_20241009.json")
    assert minilake.run(tmp_path).ingest.files == []
    pd.testing.assert_frame_equal(minilake.read_table("sales", root=tmp_path), before)

    httpserver.clear()                      # the API corrects sale 2: quantity 3, not 2
    serve_pages(httpserver, [page(sale(1), sale(2, quantity="3")), page(sale(3))])
    assert pull(tmp_path, httpserver).outcome == "landed"
    run = minilake.run(tmp_path)
    assert run.ok and [a.name for a, _ in run.split.superseded] == ["sales_20241009.json"]
    # a resent file replaces the earlier one (docs/history.md: the source is repaired from its
    # date on, as if it had come in order), in a new table version; the earlier version still
    # shows the old value
    table = minilake.read_table("sales", root=tmp_path).set_index("sale_id")
    assert table.loc["000002", "quantity"] == 3 and len(table) == 3
    history = minilake.versions("sales", tmp_path)
    assert history["operation"].iloc[-1] == "REPAIR"
    earlier = minilake.read_table("sales", root=tmp_path,
                                  version=int(history["version"].iloc[-2]))
    assert earlier.set_index("sale_id").loc["000002", "quantity"] == 2
    status = minilake.status(tmp_path).set_index("source")
    assert status.loc["sales", "resent"] == 1
    assert list(minilake.pulls(tmp_path)["outcome"]) == ["landed", "unchanged", "unchanged",
                                                         "landed"]


def test_a_second_snapshot_of_a_date_is_quarantined(small_root, tmp_path):
    from minilake.contract.sources import SOURCES
    from minilake.generate.sample_api import records

    csv = small_root / "landing_zone" / "customer_20241009.csv"
    as_json = "[\n" + ",\n".join(records(SOURCES["customer"], csv)) + "\n]\n"

    def deliver(root: Path, form: str) -> None:
        if form == "csv":
            shutil.copy(csv, root / "landing_zone")
        else:
            (root / "landing_zone" / "customer_20241009.json").write_text(as_json)

    for first, second in [("csv", "json"), ("json", "csv")]:
        root = tmp_path / first
        (root / "landing_zone").mkdir(parents=True)
        deliver(root, first)
        assert minilake.run(root).ok
        deliver(root, second)
        run = minilake.run(root)
        assert [(f.file, f.reason) for f in run.ingest.quarantined] == [(
            f"customer_20241009.{second}", f"a second snapshot for 2024-10-09: "
            f"customer_20241009.{first} was delivered for that date already")]
        assert len(minilake.read_table("customer", root=root)) == 300
    # the two forms hold the same rows: the same table either way
    pd.testing.assert_frame_equal(minilake.read_table("customer", root=tmp_path / "csv"),
                                  minilake.read_table("customer", root=tmp_path / "json"))


def test_sales_in_both_forms_on_one_date_give_one_table_in_any_arrival_order(httpserver,
                                                                           tmp_path):
    txt = "\r\n".join([f"{n:06d}~100000000000000{n}~P1001~2~12.50~25.00~{DAY}"
                       for n in (1, 2)]) + "\r\n"
    serve_pages(httpserver, [page(sale(2, quantity="3"), sale(3))])
    tables = {}
    for order in (["txt", "json"], ["json", "txt"]):
        root = tmp_path / "_".join(order)
        (root / "landing_zone").mkdir(parents=True)
        for form in order:
            if form == "txt":
                (root / "landing_zone" / "sales_20241009.txt").write_bytes(txt.encode())
            else:
                assert pull(root, httpserver).outcome == "landed"
            assert minilake.run(root).ok
        tables[tuple(order)] = minilake.read_table("sales", root=root)
    first, second = tables.values()
    pd.testing.assert_frame_equal(first, second)
    # replay order is (date, name): sales_D.json, then sales_D.txt, whose sale 2 stands
    current = first[first["is_current"]].set_index("sale_id")
    assert current.loc["000002", "quantity"] == 2 and len(current) == 3


# --- the sample API, as its own process ---------------------------------------------------

@pytest.fixture
def sample_api(small_root, tmp_path):
    with serving_sample_api(small_root / "landing_zone", tmp_path / "world", TOKEN) as served:
        yield served


def test_a_week_pulled_from_the_sample_api_equals_the_week_of_files(sample_api, tmp_path):
    world, url = sample_api
    files, pulled = tmp_path / "files", tmp_path / "pulled"
    shutil.copytree(world / "landing_zone", files / "landing_zone")
    (pulled / "landing_zone").mkdir(parents=True)
    days = sorted(p.name[6:14] for p in (world / "landing_zone").glob("sales_*.txt"))
    assert len(days) == 4
    for day in days:
        done = cli("pull", "sales", "--date", f"{day[:4]}-{day[4:6]}-{day[6:]}", "--url", url,
                   "--root", str(pulled))
        assert done.returncode == 0, done.stderr
        assert "page(s) landed as landing_zone/sales_" in done.stdout
    for path in (world / "landing_zone").glob("*"):
        if not path.name.startswith("sales_"):
            shutil.copy(path, pulled / "landing_zone")
    assert minilake.run(files).ok and minilake.run(pulled).ok
    # the same table, row for row (row_hash included), from files or from the API
    for name in ("sales", "customer", "product"):
        pd.testing.assert_frame_equal(minilake.read_table(name, root=pulled),
                                      minilake.read_table(name, root=files), obj=name)
    raw = sum(len(p.read_bytes().split(b"\r\n")) - 1
              for p in (world / "landing_zone").glob("sales_*.txt"))
    assert len(minilake.read_table("sales", root=pulled)) == raw
    pulls = minilake.pulls(pulled)
    assert list(pulls["outcome"]) == ["landed"] * 4 and (pulls["pages"] > 1).all()
    assert pulls["url"].str.startswith(url + "/sales?date=").all()
    assert not any(TOKEN.encode() in p.read_bytes() for p in pulled.rglob("*") if p.is_file())
