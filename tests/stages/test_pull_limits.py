"""A pull against a broken or hostile API (docs/formats.md, the pull protocol): endless, inflating,
repeating, slow and
echoing upstreams, each a real HTTP server on 127.0.0.1 written here (one thread per
connection), and a pull killed half-way. Memory is measured on ``python -m minilake pull`` as
its own process: the kernel's peak resident size of that process, not a reading of the code."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from support.commands import HUNG_AFTER, finish, start
from support.commands import minilake as cli

import minilake
from minilake.inbound.pull import PullError, RetryPolicy
from minilake.lake.lock import RootBusy

TOKEN = "tok-" + secrets.token_hex(12)            # unique: grep-able in every file and output
DAY = "2024-10-09"
FAST = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05, wait_jitter=0.0,
                   retry_after_max=5.0, timeout=5.0)
QUICK = {"MINILAKE_PULL_ATTEMPTS": "2", "MINILAKE_PULL_WAIT_INITIAL": "0.01",
         "MINILAKE_PULL_WAIT_MAX": "0.05", "MINILAKE_PULL_WAIT_JITTER": "0"}
LIMIT = 16 << 20                                  # the page limit of the memory tests
HEADROOM = 300 << 20                              # the interpreter, pandas, pyarrow, …

Answer = Callable[[BaseHTTPRequestHandler, int, str], None]


@pytest.fixture(autouse=True)
def token(monkeypatch) -> str:
    monkeypatch.setenv("MINILAKE_API_TOKEN", TOKEN)
    monkeypatch.delenv("MINILAKE_API_URL", raising=False)
    for name in ("PAGE_BYTES", "MAX_PAGES", "MAX_SECONDS", "READ_TIMEOUT", "ATTEMPTS",
                 "WAIT_INITIAL", "WAIT_MAX", "WAIT_JITTER", "RETRY_AFTER_MAX"):
        monkeypatch.delenv(f"MINILAKE_PULL_{name}", raising=False)
    return TOKEN


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up on a hostile answer is what the tests expect."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Upstream:
    """An HTTP/1.1 server on a free port of 127.0.0.1 that answers every GET with
    ``answer(handler, page, date)``; ``pages`` lists the pages asked for."""

    def __init__(self, answer: Answer):
        pages = self.pages = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                pages.append(int(query["page"][0]))
                try:
                    answer(self, int(query["page"][0]), query["date"][0])
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True        # the client gave up: so it should

            def log_message(self, *args) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Callable[[Answer], Upstream]]:
    started: list[Upstream] = []

    def serve(answer: Answer) -> Upstream:
        started.append(Upstream(answer))
        return started[-1]

    yield serve
    for server in started:
        server.close()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
         reason: str | None = None, **headers: str) -> None:
    handler.send_response(status, reason)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def start_chunked(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()


def chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


def sale(n: int, product: str = "P1001") -> str:
    return (f'{{"sale_id": "{n:06d}", "customer_id": 1000000000000001, "product_id": '
            f'"{product}", "quantity": 2, "price_per_unit": 12.50, "total_price": 25.00, '
            f'"sale_date": "{DAY}"}}')


def page(*records: str) -> bytes:
    return ("[" + ", ".join(records) + "]").encode()


def landed(root: Path, day: str = DAY) -> Path:
    return root / "landing_zone" / f"sales_{day.replace('-', '')}.json"


def nothing_left(root: Path) -> bool:
    """Nothing landed, nothing in the scratch folder."""
    return (not list((root / "landing_zone").glob("*"))
            and not list((root / "tables" / ".pull").glob("*")))


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "landing_zone").mkdir()
    return tmp_path


def measured(url: str, root: Path, env: dict[str, str], within: float = HUNG_AFTER
             ) -> tuple[int, str, int, float]:
    """``python -m minilake pull sales`` of DAY, run to its end or killed once its resident
    memory passes LIMIT + HEADROOM or it runs ``within`` seconds (a hang guard, not a time
    limit: the status is then -9 and the test fails on it): its exit status, stderr,
    peak resident size and seconds. The peak is the kernel's high-water mark of the process
    (VmHWM), read every few milliseconds until it exits: wait4's ru_maxrss would count the
    copy of this (large) test process that the child was before its exec."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "minilake", "pull", "sales", "--date", DAY, "--url", url,
             "--root", str(root)], env={**os.environ, **env}, stdout=out, stderr=err)
        began, peak = time.monotonic(), 0
        while process.poll() is None:
            resident, high = memory(process.pid)
            peak = max(peak, high)
            if resident > LIMIT + HEADROOM or time.monotonic() - began > within:
                process.kill()
            time.sleep(0.005)
        err.seek(0)
        return process.returncode, err.read().decode(), peak, time.monotonic() - began


def memory(pid: int) -> tuple[int, int]:
    """A live process's resident size now and at its highest, in bytes (0, 0 once gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB$", status, re.MULTILINE))
    return int(found.get("VmRSS", 0)) * 1024, int(found.get("VmHWM", 0)) * 1024


def report(name: str, **numbers: float) -> None:
    print(f"\n{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in numbers.items()))


# --- size -------------------------------------------------------------------------------

def test_an_endless_page_fails_at_the_page_limit_in_bounded_memory(upstream, root):
    def endless(handler, number, day):
        start_chunked(handler)
        chunk(handler, b"[" + sale(1).encode())
        block = (", " + ", ".join([sale(2)] * 300)).encode()
        for _ in range(200_000):                        # some 10 GB, then it stops
            chunk(handler, block)

    server = upstream(endless)
    code, stderr, peak, seconds = measured(server.url, root, {"MINILAKE_PULL_PAGE_BYTES":
                                                              str(LIMIT)})
    report("endless page", peak_mb=peak / 2**20, seconds=seconds)
    assert (code, stderr.count("\n")) == (1, 1), (code, stderr[-500:], peak)
    assert re.fullmatch(r"minilake pull: page 1 of http://127\.0\.0\.1:\d+/sales\?date="
                        r"2024-10-09: more than 16777216 bytes \(16 MiB, "
                        r"MINILAKE_PULL_PAGE_BYTES\) in one page; giving up\n", stderr), stderr
    assert peak < LIMIT + HEADROOM
    assert nothing_left(root)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A gzip body of some 1 MB that is ``[``, 1 GiB of spaces and ``]`` (a valid, empty
    array), made a MiB at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    spaces = b" " * (1 << 20)
    parts = [packer.compress(b"[")] + [packer.compress(spaces) for _ in range(1024)]
    return b"".join([*parts, packer.compress(b"]"), packer.flush()])


def test_a_gzip_bomb_fails_at_the_page_limit_in_bounded_memory(upstream, root, bomb):
    assert len(bomb) < 2 << 20
    server = upstream(lambda handler, number, day: send(
        handler, 200, bomb, Content_Type="application/json", Content_Encoding="gzip"))
    code, stderr, peak, seconds = measured(server.url, root, {"MINILAKE_PULL_PAGE_BYTES":
                                                              str(LIMIT)})
    report("gzip bomb", compressed_mb=len(bomb) / 2**20, peak_mb=peak / 2**20, seconds=seconds)
    assert code == 1, (code, stderr[-500:], peak)
    assert "page 1 of http" in stderr and "more than 16777216 bytes" in stderr
    assert peak < LIMIT + HEADROOM
    assert nothing_left(root)


def gzip(data: bytes, raw: bool = False, wbits: int = zlib.MAX_WBITS | 16) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS if raw else wbits)
    return packer.compress(data) + packer.flush()


def test_compressed_pages_land_as_plain_ones_and_a_nested_bomb_stops_at_the_limit(
        upstream, root, monkeypatch):
    plain = [page(sale(1), sale(2)), page(sale(3)), page(sale(4))]
    coded = [(gzip(plain[0]), "gzip"), (gzip(plain[1], wbits=zlib.MAX_WBITS), "deflate"),
             (gzip(plain[2], raw=True), "deflate")]          # deflate with and without header
    inner = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    spaces = b" " * (1 << 20)                 # 200 MiB of spaces in an array, gzipped twice
    once = b"".join([inner.compress(b"[")] + [inner.compress(spaces) for _ in range(200)]
                    + [inner.compress(b"]"), inner.flush()])
    twice = gzip(once)

    def answer(handler, number, day):
        if day == "2024-10-10":
            send(handler, 200, twice, Content_Encoding="gzip, gzip")
        elif number <= 3:
            body, coding = coded[number - 1]
            send(handler, 200, body, Content_Type="application/json", Content_Encoding=coding)
        else:
            send(handler, 404)

    server = upstream(answer)
    result = minilake.pull("sales", DAY, root, server.url, policy=FAST)
    assert (result.outcome, result.pages, result.records) == ("landed", 3, 4)
    assert [r["sale_id"] for r in json.loads(landed(root).read_text())] == [
        f"{n:06d}" for n in range(1, 5)]

    monkeypatch.setenv("MINILAKE_PULL_PAGE_BYTES", str(LIMIT))
    with pytest.raises(PullError, match=r"page 1 of .*date=2024-10-10: more than 16777216 "):
        minilake.pull("sales", "2024-10-10", root, server.url)
    assert not landed(root, "2024-10-10").exists()


# --- count ------------------------------------------------------------------------------

def test_an_api_answering_the_same_page_for_every_number_fails_at_page_2(upstream, root):
    same = page(sale(1), sale(2))
    server = upstream(lambda handler, number, day: send(handler, 200, same) if number <= 2000
                      else send(handler, 404))
    with pytest.raises(PullError) as failed:
        minilake.pull("sales", DAY, root, server.url, policy=FAST)
    assert str(failed.value) == (f"page 2 of {server.url}/sales?date={DAY}: the API answered "
                                 f"page 2 with the same records as page 1; giving up")
    assert server.pages == [1, 2]
    assert nothing_left(root) and len(minilake.pulls(root)) == 0


def test_more_pages_than_the_limit_fail_and_as_many_land(upstream, root, monkeypatch):
    monkeypatch.setenv("MINILAKE_PULL_MAX_PAGES", "20")
    last = {"2024-10-09": 500, "2024-10-10": 20}
    server = upstream(lambda handler, number, day: send(handler, 200, page(sale(number)))
                      if number <= last[day] else send(handler, 404))
    with pytest.raises(PullError) as failed:
        minilake.pull("sales", DAY, root, server.url)          # the policy from the environment
    assert str(failed.value) == (f"page 21 of {server.url}/sales?date={DAY}: still records "
                                 f"after 20 pages, the most a pull takes "
                                 f"(MINILAKE_PULL_MAX_PAGES); giving up")
    assert server.pages == list(range(1, 22))
    assert nothing_left(root)

    result = minilake.pull("sales", "2024-10-10", root, server.url)
    assert (result.outcome, result.pages) == ("landed", 20)


def test_a_limit_that_is_no_number_is_a_one_line_error(root):
    done = cli("pull", "sales", "--date", DAY, "--url", "http://127.0.0.1:9", "--root",
               str(root), env={"MINILAKE_PULL_PAGE_BYTES": "16MB"})
    assert (done.returncode, done.stderr) == (2, "minilake pull: MINILAKE_PULL_PAGE_BYTES="
                                                 "'16MB': not a positive whole number\n")


# --- time -------------------------------------------------------------------------------

def dribble(every: float, count: int, headers: bool = False,
            sent: list[int] | None = None) -> Answer:
    """A valid page sent one byte every ``every`` seconds for ``count`` bytes, of its body or
    (``headers``) of a header, then the rest at once (so that a client without bounds ends,
    late, with a page). ``sent`` gets an entry per answer: how many of those bytes it has
    sent so far."""
    sent = [] if sent is None else sent

    def answer(handler, number, day):
        if number > 1:
            return send(handler, 404)
        body = page(sale(1))
        slow = f"X-Slow: {'a' * count}\r\n".encode() if headers else body
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
                            + (b"" if headers else b"\r\n"))
        mine = len(sent)
        sent.append(0)
        for byte in slow[:count]:
            handler.wfile.write(bytes([byte]))
            sent[mine] += 1
            time.sleep(every)
        handler.wfile.write(slow[count:] + (b"\r\n" + body if headers else b""))
    return answer


def test_a_read_that_waits_longer_than_the_read_timeout_fails(upstream, root, monkeypatch):
    for name, value in {**QUICK, "MINILAKE_PULL_READ_TIMEOUT": "1"}.items():
        monkeypatch.setenv(name, value)
    sent: list[int] = []
    server = upstream(dribble(every=3.0, count=12, sent=sent))
    began = time.monotonic()
    with pytest.raises(PullError) as failed:
        minilake.pull("sales", DAY, root, server.url)
    given = list(sent)                  # of each answer's 12 slow bytes, when it gave up
    report("a byte every 3 s, read timeout 1 s, 2 attempts", seconds=time.monotonic() - began)
    assert str(failed.value) == (f"page 1 of {server.url}/sales?date={DAY}: timed out "
                                 f"(ReadTimeout) (2 attempt(s)); giving up")
    assert server.pages == [1, 1] and len(given) == 2 and max(given) < 12, given
    assert nothing_left(root)


@pytest.mark.parametrize("part", ["body", "headers"])
def test_a_byte_now_and_then_fails_when_the_pull_time_is_up(upstream, root, monkeypatch,
                                                             part):
    for name, value in {"MINILAKE_PULL_READ_TIMEOUT": "5", "MINILAKE_PULL_MAX_SECONDS": "3"
                        }.items():
        monkeypatch.setenv(name, value)
    sent: list[int] = []
    server = upstream(dribble(every=0.5, count=120, headers=part == "headers", sent=sent))
    began = time.monotonic()
    with pytest.raises(PullError) as failed:
        minilake.pull("sales", DAY, root, server.url)
    seconds, given = time.monotonic() - began, list(sent)
    report(f"a byte of the {part} every 0.5 s, 3 s a pull", seconds=seconds)
    assert re.fullmatch(rf"page 1 of {server.url}/sales\?date={DAY}: (\d+ byte\(s\) of it "
                        r"came; )?out of the 3 s a pull may take \(MINILAKE_PULL_MAX_SECONDS\); "
                        r"giving up", str(failed.value)), str(failed.value)
    assert seconds >= 3                     # not before its time (a load only adds to it)
    assert given[0] < 120, given            # given up in the middle of the page, not after
    assert nothing_left(root) and server.pages == [1]


def test_retries_stop_when_the_pull_time_is_up(upstream, root, monkeypatch):
    for name, value in {"MINILAKE_PULL_ATTEMPTS": "50", "MINILAKE_PULL_MAX_SECONDS": "3"
                        }.items():
        monkeypatch.setenv(name, value)
    server = upstream(lambda handler, number, day: send(handler, 503, Retry_After="2"))
    with pytest.raises(PullError) as failed:
        minilake.pull("sales", DAY, root, server.url)
    assert str(failed.value) == (f"page 1 of {server.url}/sales?date={DAY}: answered 503 "
                                 f"Service Unavailable; out of the 3 s a pull may take "
                                 f"(MINILAKE_PULL_MAX_SECONDS); giving up")
    assert len(server.pages) <= 2               # of the 50 attempts allowed: time was up


# --- the token ------------------------------------------------------------------------

def escaped(text: str) -> str:
    """``text`` as a JSON string body with every character a ``\\u`` escape."""
    return "".join(f"\\u{ord(c):04x}" for c in text)


def echo(handler: BaseHTTPRequestHandler, number: int, day: str) -> None:
    """An upstream that puts the request's headers into whatever it answers, by date: the
    reason phrase, a header, an error body, a JSON object, records, a body that is no JSON, a
    status line that is no HTTP."""
    auth = handler.headers["Authorization"]
    headers = json.dumps({"headers": dict(handler.headers)})
    if day == "2024-10-09":           # records with it, then an object: quarantined
        if number == 1:
            return send(handler, 200, page(sale(1, auth)), X_Echo=auth)
        return send(handler, 200, (headers[:-1] + f', "again": "{escaped(auth)}"}}').encode(),
                    reason=f"OK {auth}", X_Echo=auth)
    if day == "2024-10-10":           # records with it, literally and escaped: landed
        if number == 1:
            return send(handler, 200, page(sale(1, auth), sale(2, escaped(auth))))
        return send(handler, 404, headers.encode(), reason=f"Not Found {auth}")
    if day == "2024-10-11":
        return send(handler, 400, f"Authorization: {auth}\n{headers}".encode(),
                    reason=f"Bad {auth}", X_Echo=auth)
    if day == "2024-10-12":
        return send(handler, 503, headers.encode(), reason=f"Busy {auth}", X_Echo=auth)
    if day == "2024-10-13":
        handler.wfile.write(f"HTTP/1.1 2x0 {auth}\r\n\r\n".encode())
        handler.close_connection = True
        return None
    return send(handler, 200, f"Authorization: {auth}".encode(), X_Echo=auth)   # no JSON


ECHO_DAYS = [f"2024-10-{d:02d}" for d in range(9, 15)]


def test_an_upstream_echoing_the_request_never_gets_the_token_written(upstream, root,
                                                                      caplog):
    server = upstream(echo)
    caplog.set_level(logging.DEBUG)                    # httpcore's lines quote the headers
    said = []
    for day in ECHO_DAYS:
        try:
            said.append(minilake.pull("sales", day, root, server.url, policy=FAST).line())
        except PullError as error:
            said.append(str(error))
    assert [s.split(": ", 2)[-1] for s in said] == [
        "quarantined: page 2 of " + f"{server.url}/sales?date=2024-10-09: not a JSON array "
        "but an object",
        "2 record(s) in 1 page(s) landed as landing_zone/sales_20241010.json",
        "answered 400 Bad Request",
        "answered 503 Service Unavailable 3 time(s); giving up",
        "RemoteProtocolError (3 attempt(s)); giving up",
        "quarantined: page 1 of " + f"{server.url}/sales?date=2024-10-14: not JSON: "
        "Expecting value (line 1)"]
    (root / "cli" / "landing_zone").mkdir(parents=True)
    done = [cli("-v", "pull", "sales", "--date", day, "--url", server.url, "--root",
                str(root / "cli"), env=QUICK) for day in ECHO_DAYS]
    assert [d.returncode for d in done] == [1, 0, 1, 1, 1, 1]
    assert "HTTP Request: GET" in done[0].stderr       # httpx's line, with its reason phrase

    assert "receive_response_headers.complete" in caplog.text     # httpcore's, with headers
    for text in [*said, caplog.text, *(d.stdout + d.stderr for d in done)]:
        assert TOKEN not in text
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) > 10
    assert [p for p in files if TOKEN.encode() in p.read_bytes()] == []
    # what came is kept, the token in it replaced, not dropped
    quarantined = root / "quarantine" / "sales"
    assert (quarantined / "sales_20241009.json").read_bytes().count(b"[token]") == 2
    assert b"Authorization: [token]" in (quarantined / "sales_20241014.json").read_bytes()
    assert [r["product_id"] for r in json.loads(landed(root, "2024-10-10").read_text())] == [
        "[token]", "[token]"]


# --- a pull killed half-way ---------------------------------------------------------------

def test_a_killed_pulls_scratch_file_is_removed_by_the_next_pull_holding_the_lock(
        upstream, root, caplog):
    server = upstream(lambda handler, number, day: send(handler, 200, page(sale(number)))
                      if number <= 3 else send(handler, 404))
    killed = finish(start("pull", "sales", "--date", DAY, "--url", server.url, "--root",
                          str(root), env={"MINILAKE_CRASH_AT": "pull.page_written:2"}))
    assert killed.returncode == -9
    stale = root / "tables" / ".pull" / "sales_20241009.json.partial"
    assert stale.exists()
    assert not landed(root).exists()

    # while another process holds the root, a pull removes nothing
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
         "os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
         "time.sleep(600)", str(root / ".minilake.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RootBusy, match="in use by minilake"):
            minilake.pull("sales", "2024-10-10", root, server.url, policy=FAST)
        assert stale.exists()
    finally:
        holder.kill()
        holder.wait()

    caplog.set_level(logging.INFO, logger="minilake")
    result = minilake.pull("sales", "2024-10-10", root, server.url, policy=FAST)
    assert result.outcome == "landed"
    assert not stale.exists() and not list((root / "tables" / ".pull").iterdir())
    assert ("pull: removed tables/.pull/sales_20241009.json.partial, left by a pull that did "
            "not finish") in caplog.messages
