"""The job server against hostile clients: refused before its body is read, bodies bounded in
size and time, headers in time; a real uvicorn process on 127.0.0.1, spoken to over raw
sockets where a polite client could not misbehave enough."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest
from support.commands import HUNG_AFTER
from test_server import TOKEN, Server

from minilake.apps.server import Limits

pytestmark = pytest.mark.xdist_group("server")
MAX_BODY = 500_000
BODY_TIMEOUT = HEADER_TIMEOUT = 2
MB = 1 << 20
TRICKLE = 1000        # bytes of a header line or body sent one at a time, 0.2 s apart


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("limits"), env={
        "MINILAKE_SERVER_MAX_BODY_BYTES": str(MAX_BODY),
        "MINILAKE_SERVER_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "MINILAKE_SERVER_HEADER_TIMEOUT": str(HEADER_TIMEOUT)})
    assert httpx.get(f"{running.url}/health", timeout=HUNG_AFTER).status_code == 200
    yield running
    running.stop()


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=HUNG_AFTER)


def request_head(path: str, token: str | None = TOKEN, method: str = "POST",
                 **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    lines += [f"Authorization: Bearer {token}"] * (token is not None)
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def receive(sock: socket.socket, deadline: float, waiting_for: str) -> bytes:
    """What the server sends next; b"" once it has closed (or reset) the connection. Nothing
    by the deadline (a hang guard, not a time limit) fails the test, saying what it waited
    for."""
    if not select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
        pytest.fail(f"waited {HUNG_AFTER} s for {waiting_for}: the server neither sent it "
                    f"nor closed the connection")
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def reply(sock: socket.socket) -> tuple[int | None, dict, bytes]:
    """The server's answer: status, headers, body; status None if it closed the connection
    without one."""
    deadline, data = time.monotonic() + HUNG_AFTER, b""
    while b"\r\n\r\n" not in data:
        chunk = receive(sock, deadline, "the server's answer")
        if not chunk:
            return None, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (x.partition(": ") for x in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = receive(sock, deadline, "the rest of the answer's body")
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed(sock: socket.socket) -> bool:
    """True once the server has closed the connection (it may send more first); one still
    open after HUNG_AFTER seconds (a hang guard) fails the test."""
    deadline = time.monotonic() + HUNG_AFTER
    while receive(sock, deadline, "the server to close the connection"):
        pass
    return True


def one_line_json(body: bytes) -> dict:
    """An error as the server promises it: one line of JSON with a ``detail``."""
    assert b"\n" not in body.strip() and b"Traceback" not in body, body[:300]
    answer = json.loads(body)
    assert isinstance(answer["detail"], str), answer
    return answer


class Sender(threading.Thread):
    """Sends ``head`` then ``blocks`` from a thread of its own, so that the test reads the
    answer meanwhile; stops when told, or when the server closes the connection."""

    def __init__(self, sock: socket.socket, head: bytes, blocks, pause: float = 0):
        super().__init__(daemon=True)
        self.sock, self.head, self.blocks, self.pause = sock, head, blocks, pause
        self.sent, self.done = 0, threading.Event()

    def run(self) -> None:
        try:
            self.sock.sendall(self.head)
            for block in self.blocks:
                if self.done.wait(self.pause):
                    return
                self.sock.sendall(block)
                self.sent += len(block)
        except OSError:
            pass

    def __enter__(self) -> Sender:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)     # a sendall blocked on a full buffer ends
        except OSError:
            pass
        self.join(60)
        self.sock.close()


class PeakRss(threading.Thread):
    """The highest resident memory of a process while the block runs, sampled often."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.before = self.peak = self.process.memory_info().rss
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.before


def blocks(total: int, size: int = MB):
    for _ in range(total // size):
        yield b"x" * size


def chunks(total: int, size: int = 64 << 10):
    """A chunked body of ``total`` bytes that never ends (no last chunk)."""
    for _ in range(total // size):
        yield b"%x\r\n" % size + b"x" * size + b"\r\n"


def test_a_large_post_without_a_token_is_answered_401_unread(guarded):
    sock = connect(guarded)
    head = request_head("/jobs/run", token=None, Content_Length=str(300 * MB))
    with PeakRss(guarded.process.pid) as rss, Sender(sock, head, blocks(300 * MB)) as sender:
        status, headers, body = reply(sock)
        answered = sender.sent                       # of the body, when the answer came
        assert closed(sock)
    print(f"401 after {answered / MB:.0f} MB of 300 sent, RSS {rss.before / MB:.0f}"
          f" -> peak {rss.peak / MB:.0f} MB")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert one_line_json(body) == {"detail": "missing or wrong bearer token"}
    assert answered < 100 * MB                       # answered long before the body was sent
    assert rss.growth < 50 * MB


def test_an_endless_chunked_body_is_cut_off_with_413(guarded):
    sock = connect(guarded)
    head = request_head("/jobs/export", Transfer_Encoding="chunked")
    with PeakRss(guarded.process.pid) as rss, Sender(sock, head, chunks(300 * MB)) as sender:
        status, _, body = reply(sock)
        assert closed(sock)
    print(f"413 after {sender.sent / MB:.1f} MB sent, RSS {rss.before / MB:.0f}"
          f" -> peak {rss.peak / MB:.0f} MB")
    assert status == 413
    assert one_line_json(body) == {"detail": f"the request body is over {MAX_BODY} bytes"}
    assert sender.sent < 100 * MB and rss.growth < 50 * MB


def test_a_content_length_over_the_limit_is_answered_413_unread(guarded):
    with connect(guarded) as sock:
        sock.sendall(request_head("/jobs/export", Content_Length=str(MAX_BODY + 1)))
        status, headers, body = reply(sock)                    # no byte of the body sent
        assert status == 413 and headers["connection"] == "close"
        assert one_line_json(body) == {"detail": f"the request body is over {MAX_BODY} bytes"}
        assert closed(sock)


def test_a_body_slower_than_the_body_timeout_is_answered_408(guarded):
    """Cut off before the body ended, and not before its time: the clock starts here, before
    the request's first byte, so no load can make the answer look early."""
    sock = connect(guarded)
    head = request_head("/jobs/export", Content_Length=str(TRICKLE))
    started = time.monotonic()
    with Sender(sock, head, (b" " for _ in range(TRICKLE)), pause=0.2) as sender:
        status, _, body = reply(sock)
        took, sent = time.monotonic() - started, sender.sent
        assert closed(sock)
    print(f"408 after {took:.2f} s, {sent} of {TRICKLE} bytes sent")
    assert status == 408 and sent < TRICKLE
    assert took > BODY_TIMEOUT * 0.9
    assert one_line_json(body) == {"detail": f"the request body did not arrive within "
                                             f"{BODY_TIMEOUT} s"}


def trickled_header(sock: socket.socket, head: bytes = b"") -> tuple[int | None, bytes, int]:
    """Send ``head``, then a header line a byte at a time (TRICKLE bytes, never ended): the
    server's answer, and how many bytes of the line it had been sent by then; the server must
    then close the connection."""
    endless = (b"X-Slow: " + b"a" * (TRICKLE - 8))
    with Sender(sock, head, (endless[i:i + 1] for i in range(TRICKLE)), pause=0.2) as sender:
        status, _, body = reply(sock)
        sent = sender.sent
        assert closed(sock)
    return status, body, sent


def test_headers_slower_than_the_header_timeout_are_dropped(guarded):
    """Cut off before the header line ended, and not before its time (the clock starts
    before the connection, so no load can make the answer look early)."""
    started = time.monotonic()
    status, body, sent = trickled_header(connect(guarded), b"GET /health HTTP/1.1\r\n")
    took = time.monotonic() - started
    print(f"half-sent headers: {status} after {took:.2f} s, {sent} of {TRICKLE} bytes sent")
    assert status == 408 and sent < TRICKLE
    assert took > HEADER_TIMEOUT * 0.9
    assert one_line_json(body) == {"detail": f"the request's headers did not arrive within "
                                             f"{HEADER_TIMEOUT} s"}
    started = time.monotonic()
    with connect(guarded) as silent:                                  # says nothing at all
        assert closed(silent)
        assert time.monotonic() - started > HEADER_TIMEOUT * 0.9
    with connect(guarded) as kept:             # the deadline runs again after each answer
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert reply(kept)[0] == 200
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert reply(kept)[0] == 200
        status, _, sent = trickled_header(kept, b"GET /health HTTP/1.1\r\n")
        assert status == 408 and sent < TRICKLE


def test_docs_are_off_and_the_openapi_document_stays(guarded):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect", "/no/such/route"):
        assert httpx.get(guarded.url + path, timeout=HUNG_AFTER).status_code == 401, path
        assert httpx.get(guarded.url + path, headers=bearer,
                         timeout=HUNG_AFTER).status_code == 404
    document = httpx.get(f"{guarded.url}/openapi.json", timeout=HUNG_AFTER)
    assert document.status_code == 200
    assert set(document.json()["paths"]) == {"/health", "/jobs/run", "/jobs/pull",
                                             "/jobs/export", "/status", "/tables/{name}",
                                             "/reports/", "/reports/index.html",
                                             "/reports/runs/{name}", "/jobs",
                                             "/jobs/{job_id}", "/jobs/{job_id}/log"}


HOSTILE_BODIES = [
    ("over the limit", "application/json", json.dumps({"table": "x" * MAX_BODY}).encode()),
    ("over the limit, chunked", "application/json", [b'{"table": "', b"x" * MAX_BODY]),
    ("2 MiB", "application/json", json.dumps({"table": "x" * 2 * MB}).encode()),
    ("just under the limit, wrong fields", "application/json", json.dumps(
        {"table": 1, "source": 1, "allow_mass_delete": "x" * (MAX_BODY - 100)}).encode()),
    ("invalid UTF-8", "application/json", b'{"table": "\xff\xfe\xc3("}'),
    ("truncated", "application/json", b'{"table": "sales", "format": "av'),
    ("deeply nested", "application/json", b"[" * 200_000),
    ("not an object", "application/json", b'"sales"'),
    ("empty", "application/json", b""),
    ("not JSON's type", "text/plain", b'{"table": "sales"}'),
    ("NUL bytes", "application/json", b"\x00" * 1000),
]


@pytest.mark.parametrize("path", ["/jobs/export", "/jobs/pull", "/jobs/run"])
def test_large_and_malformed_bodies_get_a_one_line_json_4xx(guarded, path):
    for name, kind, content in HOSTILE_BODIES:
        if path == "/jobs/run" and name in ("empty", "not JSON's type"):
            continue                                  # a run's body is optional: it would run
        streamed = iter(content) if isinstance(content, list) else content    # no length
        answer = httpx.post(guarded.url + path, content=streamed, timeout=HUNG_AFTER, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": kind})
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text[:300])
        one_line_json(answer.content)
        if name.startswith(("over", "2 MiB")):
            assert answer.status_code == 413, name


MALFORMED = [
    ("a Content-Length that is no number",
     request_head("/jobs/run", Content_Length="ten") + b"{}", 400),
    ("two Content-Lengths", request_head("/jobs/run", Content_Length="2")[:-2]
     + b"Content-Length: 3\r\n\r\n{}", 400),
    ("a broken chunk", request_head("/jobs/export", Transfer_Encoding="chunked") + b"zz\r\n",
     400),
    ("headers without end", request_head("/health", method="GET")[:-2]
     + b"X-More: b\r\n" * 20_000, 431),
    ("no HTTP at all", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 400),
]


# named by their names only: the bytes hold this worker's token, and xdist needs every worker
# to collect the same test ids
@pytest.mark.parametrize("name, request_bytes, status", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_a_one_line_json_4xx(guarded, name, request_bytes, status):
    with connect(guarded) as sock:
        sock.sendall(request_bytes)
        got, _, body = reply(sock)
        assert got == status, (name, got, body[:300])
        one_line_json(body)
        assert closed(sock)


def test_the_limits_come_from_the_environment(monkeypatch, tmp_path):
    assert Limits() == Limits(max_body_bytes=MB, body_timeout=30, header_timeout=10)
    monkeypatch.setenv("MINILAKE_SERVER_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("MINILAKE_SERVER_BODY_TIMEOUT", "2.5")
    assert Limits.from_env() == Limits(max_body_bytes=2048, body_timeout=2.5)
    env = {**os.environ, "MINILAKE_SERVER_TOKEN": TOKEN, "MINILAKE_SERVER_MAX_BODY_BYTES": "1MB"}
    done = subprocess.run([sys.executable, "-m", "minilake", "serve", "--root", str(tmp_path),
                           "--port", "0"], env=env, capture_output=True, text=True,
                          timeout=HUNG_AFTER)
    assert done.returncode == 2
    assert done.stderr == ("minilake serve: MINILAKE_SERVER_MAX_BODY_BYTES='1MB': a positive "
                           "whole number is required\n")
