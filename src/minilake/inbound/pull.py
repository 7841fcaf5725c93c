"""A day's delivery pulled from an HTTP API into landing_zone/ (docs/formats.md).

``GET {url}/{source}?date=YYYY-MM-DD&page=N`` for N = 1, 2, … until a 404 or an empty array,
each page a JSON array of records. The records are written, as they arrive, to a scratch file
outside the landing zone (``tables/.pull/``) with every value exactly as it came (a number as
its literal, so ``1.10`` stays ``1.10``); only when the last page has arrived does the day land,
renamed in one step, as ``landing_zone/<prefix>_YYYYMMDD.json``. From there on it is an
ordinary delivery of the source's JSON form: split, validation, error report, SCD2, ingest log.
A page that names the table version it read (``Minilake-Table-Version``: another minilake's
job server) pins the pages after it to that version (``&version=``).

The HTTP client is httpx; retries are stamina's (exponential backoff with jitter, bounded), with
the wait taken from ``Retry-After`` where the server gives one. The token comes from the
environment only, travels in the ``Authorization`` header only, and is never part of a message,
a log line or a file.

The upstream is not trusted, since a broken or hostile API must not be able to exhaust the
machine, hold a pull for ever or draw the token out. So:

- a page is read as a stream, its ``Content-Encoding`` (gzip, deflate) undone by minilake a
  bounded piece at a time, and the pull fails once a page holds more than ``page_bytes`` (before
  or after decompression): a small gzip body can hold gigabytes, and httpx would inflate a whole
  network read at once. A page that passes is parsed whole, which takes some eight times its
  size, hence a default well below what a machine has;
- a day takes at most ``max_pages`` pages, and a page identical to the one before it (same
  bytes, records in it) is an error: an API that ignores ``page=`` would otherwise be pulled
  for ever;
- ``timeout`` is how long a connection or a read may wait for a byte, and the whole pull
  (every page, read and retry wait) has ``max_seconds``, so that a server sending a byte now
  and then fails too. The time left is checked before each request, after each read and
  before each retry, and caps each request's timeout and each ``Retry-After``; when it is up,
  a watchdog shuts the pull's connections down (a status line or headers sent a byte at a
  time never reach a check between reads). A pull ends when its time is up, or after the
  backoff wait under way then;
- a message names the status and what minilake made of it, never the body or reason phrase
  the server sent, and every form of the token (as sent, JSON-escaped, percent-encoded) in what
  came back is replaced by ``[token]`` before it is written anywhere (scratch, landing zone,
  quarantine), and out of httpx's and httpcore's log lines (which quote the status line and
  headers the server sent): an upstream that echoes the request must not be able to put the
  token in a file, a message or a log;
- the next pull of a root removes scratch files a killed pull left in ``tables/.pull/``.

Each bound has a default and an environment variable (read by :meth:`RetryPolicy.from_env`,
what ``pull`` uses when it is given no policy, so also the command line and the job server):

====================================  ===========  ============================================
``MINILAKE_PULL_PAGE_BYTES``          67108864     bytes of one page, after decompression
``MINILAKE_PULL_MAX_PAGES``           100000       pages of one day
``MINILAKE_PULL_MAX_SECONDS``         3600         seconds of one pull, waits included
``MINILAKE_PULL_READ_TIMEOUT``        30           seconds a read (or connect) waits for a byte
``MINILAKE_PULL_ATTEMPTS``            6            attempts per page
``MINILAKE_PULL_WAIT_INITIAL``        0.5          first retry wait, seconds (doubling)
``MINILAKE_PULL_WAIT_MAX``            30           longest retry wait, seconds
``MINILAKE_PULL_WAIT_JITTER``         0.5          random seconds added to a retry wait
``MINILAKE_PULL_RETRY_AFTER_MAX``     120          longest ``Retry-After`` honoured, seconds
====================================  ===========  ============================================

Longer than most because the protocol, the bounds on what a peer may send (bytes, pages, time,
repeats), the retries and the landing are one transaction, and a day lands whole or not at
all.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import logging
import math
import os
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, fields
from http import HTTPStatus
from pathlib import Path
from typing import TextIO
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import httpx
import pandas as pd
import stamina
from tqdm import tqdm

from minilake.contract.sources import JSON, SOURCES, Source
from minilake.crashpoints import crashpoint
from minilake.formats import readers
from minilake.lake import files, logs, storage
from minilake.lake.layout import Layout
from minilake.lake.lock import hold

log = logging.getLogger(__name__)

TOKEN_ENV = "MINILAKE_API_TOKEN"
VERSION_HEADER = "Minilake-Table-Version"      # a minilake job server's (docs/server.md)
URL_ENV = "MINILAKE_API_URL"
RETRIED_STATUS = {429, 500, 502, 503, 504}
REDACTED = "[token]"
ACCEPTED = "gzip, deflate"            # the codings minilake undoes, a bounded piece at a time
_PIECE = 1 << 20                      # the most one step of decompression makes
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}

# The page being fetched, and the attempts it gets, for the line said before each retry.
_fetching: ContextVar[tuple[str, int]] = ContextVar("fetching", default=("a page", 0))
# Scratch files that pulls of this process are writing: the root's lock is re-entrant within a
# process, so holding it does not make every scratch file under it stale.
_writing: set[Path] = set()
# The tokens of the pulls under way, for the filter on httpx's and httpcore's log lines.
_secrets: set[_Secret] = set()


def _said(details: stamina.instrumentation.RetryDetails) -> None:
    """stamina's retry hook: one line naming the page, what went wrong and the wait."""
    where, attempts = _fetching.get()
    log.warning("%s: %s; attempt %d of %d in %.1f s", where, _reason(details.caused_by),
                details.retry_num + 1, attempts, details.wait_for)


stamina.instrumentation.set_on_retry_hooks([_said])


class _Unquoted(logging.Filter):
    """Takes the token of every pull under way out of httpx's and httpcore's log lines: they
    quote the status line (httpx at INFO, what ``-v`` shows) and headers (httpcore at DEBUG)
    the server sent, which an upstream echoing the request fills with the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = clean = record.getMessage()
            for secret in list(_secrets):
                clean = secret.text(clean)
            if clean != message:
                record.msg, record.args = clean, None
        return True


for _name in ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2",
              "httpcore.proxy", "httpcore.socks"):
    logging.getLogger(_name).addFilter(_Unquoted())


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a pull tries, and how far it goes. ``attempts`` per page, exponential waits
    from ``wait_initial`` to ``wait_max`` seconds (plus up to ``wait_jitter``), a server's
    ``Retry-After`` honoured up to ``retry_after_max`` seconds (a longer one fails the pull at
    once, saying so), ``timeout`` seconds for a connection or a read to make progress; at most
    ``page_bytes`` bytes in a page (after decompression), ``max_pages`` pages in a day and
    ``max_seconds`` for the whole pull. :meth:`from_env` reads each from the environment."""

    attempts: int = 6
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 0.5
    retry_after_max: float = 120.0
    timeout: float = 30.0
    page_bytes: int = 64 << 20
    max_pages: int = 100_000
    max_seconds: float = 3600.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """The defaults, each replaced by its ``MINILAKE_PULL_*`` variable where one is set
        (the command line and the job server have no other way to be given them)."""
        given = {}
        for field in fields(cls):
            name = ENV[field.name]
            text = os.environ.get(name, "").strip()
            if text:
                given[field.name] = _setting(name, text, type(field.default),
                                             zero=field.name.startswith(("wait", "retry")))
        return cls(**given)


ENV = {"attempts": "MINILAKE_PULL_ATTEMPTS", "wait_initial": "MINILAKE_PULL_WAIT_INITIAL",
       "wait_max": "MINILAKE_PULL_WAIT_MAX", "wait_jitter": "MINILAKE_PULL_WAIT_JITTER",
       "retry_after_max": "MINILAKE_PULL_RETRY_AFTER_MAX",
       "timeout": "MINILAKE_PULL_READ_TIMEOUT", "page_bytes": "MINILAKE_PULL_PAGE_BYTES",
       "max_pages": "MINILAKE_PULL_MAX_PAGES", "max_seconds": "MINILAKE_PULL_MAX_SECONDS"}


def _setting(name: str, text: str, kind: type, zero: bool) -> int | float:
    """One variable's value, or a one-line ValueError naming it (a typo must not mean no
    bound at all)."""
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        whole = "whole " if kind is int else ""
        raise ValueError(f"{name}={text!r}: not a {'' if zero else 'positive '}{whole}number")
    return value


class PullError(RuntimeError):
    """The pull failed; nothing landed. The message is one line naming the URL and page."""


class _Busy(Exception):
    """A status worth retrying (429, 5xx), with the server's ``Retry-After`` in seconds."""

    def __init__(self, status: int, retry_after: float | None):
        super().__init__(_status(status))
        self.status, self.retry_after = status, retry_after


class _BadPage(Exception):
    """A page that is no JSON array: the day is a bad file (docs/formats.md)."""

    def __init__(self, body: bytes, why: str, retry: bool):
        super().__init__(why)
        self.body, self.why, self.retry = body, why, retry


class _Undecodable(Exception):
    """A body that does not decompress as its ``Content-Encoding`` says (cut short, perhaps:
    worth another try)."""

    def __init__(self, coding: str):
        super().__init__(f"a body that is not the {coding} its Content-Encoding says")


@dataclass
class PullResult:
    source: str
    day: dt.date
    file: str
    url: str                          # the first page's URL, as shown (no credentials)
    pages: int = 0                    # pages that held records
    records: int = 0
    outcome: str = ""                 # landed | unchanged | empty | quarantined
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("landed", "unchanged")

    def line(self) -> str:
        head = f"pull: {self.source} {self.day.isoformat()}"
        if self.outcome == "landed":
            return (f"{head}: {self.records} record(s) in {self.pages} page(s) landed as "
                    f"landing_zone/{self.file}")
        if self.outcome == "unchanged":
            return (f"{head}: {self.records} record(s) in {self.pages} page(s), identical to "
                    f"the delivery already here ({self.reason}); nothing landed")
        if self.outcome == "empty":
            return f"{head}: the API has no records for that date ({self.reason}); nothing landed"
        return f"{head}: quarantined: {self.reason}"


def shown(url: str) -> str:
    """A URL as it may be printed: without user, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _status(code: int) -> str:
    """A status in minilake's words: the code and its standard phrase, never the phrase the
    server sent (which is the server's to fill, with anything)."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _reason(error: BaseException) -> str:
    """An exception as a few words: never the request's headers, and never text the server
    sent (h11 quotes a malformed status line in its message), so only a refused or failed
    connection keeps its own text, which comes from this machine."""
    if isinstance(error, _Busy):
        return f"answered {error}"
    if isinstance(error, _BadPage):
        return error.why
    if isinstance(error, _Undecodable):
        return str(error)
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    text = ((str(error).splitlines() or [""])[0] if isinstance(error, httpx.ConnectError)
            else "")
    return f"{type(error).__name__}" + (f": {text}" if text else "")


class _Secret:
    """The token in each form an upstream might send it back in: as sent, JSON-escaped,
    percent-encoded (and as Python quotes it in a log line). Whatever came from the API passes
    through :meth:`bytes` or :meth:`text` before it is written anywhere."""

    def __init__(self, *values: str):
        forms = set()
        for value in values:
            forms |= {value, json.dumps(value)[1:-1], quote(value, safe=""),
                      quote_plus(value, safe=""), repr(value.encode())[2:-1]}
        self.forms = sorted((form for form in forms if form), key=len, reverse=True)

    def text(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def bytes(self, data: bytes | bytearray) -> bytes | bytearray:
        for form in self.forms:
            raw = form.encode()
            if raw in data:
                data = data.replace(raw, REDACTED.encode())
        return data


class _Pages:
    """One source and date of an API, page by page, within the policy's bounds."""

    def __init__(self, base: str, source: Source, day: dt.date, token: str,
                 policy: RetryPolicy):
        self.url = f"{base.rstrip('/')}/{source.name}"
        self.day, self.policy = day, policy
        self.client = httpx.Client(timeout=policy.timeout, follow_redirects=False,
                                   headers={"Authorization": token, "Accept-Encoding": ACCEPTED})
        self.secret = _Secret(token, self.client.headers["Authorization"])
        _secrets.add(self.secret)
        self.deadline = time.monotonic() + policy.max_seconds
        self.previous: bytes | None = None      # the digest of the last page that held records
        self.sockets: list[socket.socket] = []  # every connection's, for the watchdog
        self.cut = False                        # the watchdog has shut them down
        # a minilake job server names the table version its first page read; the later
        # pages ask for that version, so a run committing between them moves nothing
        self.version: str | None = None
        self.watchdog = threading.Timer(min(policy.max_seconds, threading.TIMEOUT_MAX),
                                        self._cut)
        self.watchdog.daemon = True
        self.watchdog.start()

    def where(self, page: int) -> str:
        return f"page {page} of {shown(self.url)}?date={self.day.isoformat()}"

    def get(self, page: int) -> list | None:
        """The records of page ``page``, or None when there is no such page (404). Raises
        :class:`_BadPage` for a page that is no JSON array (a body that is not JSON at all, as
        a connection cut without a length gives, after the retries), :class:`PullError` when
        the page is the one before it again."""
        policy = self.policy

        def retried(error: Exception) -> bool | float:
            if self._left() <= 0:
                return False
            if isinstance(error, _BadPage):
                return error.retry
            if isinstance(error, _Busy):
                if error.retry_after is None:
                    return True
                if error.retry_after > min(policy.retry_after_max, self._left()):
                    return False
                return error.retry_after
            return isinstance(error, (httpx.TransportError, _Undecodable))

        _fetching.set((self.where(page), policy.attempts))
        try:
            for attempt in stamina.retry_context(
                    on=retried, attempts=policy.attempts, timeout=None,
                    wait_initial=policy.wait_initial, wait_max=policy.wait_max,
                    wait_jitter=policy.wait_jitter):
                with attempt:
                    records, digest = self._once(page)
        except (_Busy, httpx.TransportError, _Undecodable) as error:
            raise PullError(self._given_up(page, error)) from None
        if records and digest == self.previous:
            raise PullError(f"{self.where(page)}: the API answered page {page} with the same "
                            f"records as page {page - 1}; giving up")
        if records:
            self.previous = digest
        return records

    def _given_up(self, page: int, error: Exception) -> str:
        policy, where = self.policy, self.where(page)
        if isinstance(error, _Busy) and (error.retry_after or 0) > policy.retry_after_max:
            return (f"{where}: answered {error} asking to retry after {error.retry_after:.0f} "
                    f"s, longer than the {policy.retry_after_max:.0f} s a pull waits")
        if self._left() <= 0 or (isinstance(error, _Busy)
                                 and (error.retry_after or 0) > self._left()):
            return self._time_up(page, "" if self.cut else _reason(error))
        if isinstance(error, _Busy):
            return f"{where}: {_reason(error)} {policy.attempts} time(s); giving up"
        return f"{where}: {_reason(error)} ({policy.attempts} attempt(s)); giving up"

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _time_up(self, page: int, why: str = "") -> str:
        return (f"{self.where(page)}: {why + '; ' if why else ''}out of the "
                f"{self.policy.max_seconds:g} s a pull may take ({ENV['max_seconds']}); giving up")

    def _once(self, page: int) -> tuple[list | None, bytes]:
        """One attempt at a page: its records and the digest of its body."""
        body = self._body(page)
        if body is None:
            return None, b""
        try:
            value = readers.parse_json(body.decode("utf-8-sig"), exact=True)
        except UnicodeDecodeError as error:
            raise _BadPage(bytes(body), f"not UTF-8: {error.reason} at byte {error.start}",
                           retry=False) from None
        except json.JSONDecodeError as error:    # cut short, perhaps: worth another try
            raise _BadPage(bytes(body), f"not JSON: {error.msg} (line {error.lineno})",
                           retry=True) from None
        if not isinstance(value, list):
            raise _BadPage(self._as_came(body, value),
                           f"not a JSON array but {readers.json_kind(value)}", retry=False)
        return value, hashlib.sha256(body).digest()

    def _as_came(self, body: bytearray, value: object) -> bytes:
        """What came, to be quarantined; written back from the parse if the token is still in
        it there (escaped, say, one character at a time), so that no form of it is kept."""
        again = readers.json_text(value)
        if self.secret.text(again) != again:
            return self.secret.text(again).encode()
        return bytes(body)

    def _body(self, page: int) -> bytearray | None:
        """The page's body, its Content-Encoding undone and the token taken out; None for a
        404. The body is read only for a 2xx status: what a server says with an error is
        never needed, so it is never held."""
        left = self._left()
        if left <= 0:
            raise PullError(self._time_up(page))
        asked = {"date": self.day.isoformat(), "page": page}
        with self.client.stream("GET", self.url, params={**asked, **(
                {"version": self.version} if self.version else {})},
                                timeout=min(self.policy.timeout, left),
                                extensions={"trace": self._traced}) as response:
            status = response.status_code
            named = response.headers.get(VERSION_HEADER, "")
            if 200 <= status < 300 and self.version is None and named.isascii() \
                    and named.isdigit():
                self.version = named
            if status == 404:
                return None
            if status in (401, 403):
                raise PullError(f"{self.where(page)}: the API refused the token "
                                f"({_status(status)}; set {TOKEN_ENV})")
            if status in RETRIED_STATUS:
                raise _Busy(status, _retry_after(response))
            if status == 204:
                return bytearray(b"[]")
            if not 200 <= status < 300:
                raise PullError(f"{self.where(page)}: answered {_status(status)}")
            return self.secret.bytes(self._read(response, page))

    def _read(self, response: httpx.Response, page: int) -> bytearray:
        """The body, decompressed a bounded piece at a time, failing as soon as it (or what
        came over the wire) passes ``page_bytes``: an endless or inflating body must fail, not
        fill the memory."""
        limit, body = self.policy.page_bytes, bytearray()
        codings = [c.strip().lower()
                   for c in response.headers.get_list("content-encoding", split_commas=True)]
        for piece in _decoded(self._raw(response, page), codings):
            body += piece
            if len(body) > limit:
                raise self._too_big(page)
        return body

    def _raw(self, response: httpx.Response, page: int) -> Iterator[bytes]:
        """The bytes as they come over the wire, counted, with the pull's time checked after
        each read (a server sending a byte now and then never lets a read time out)."""
        came = 0
        for chunk in response.iter_raw():
            came += len(chunk)
            if came > self.policy.page_bytes:
                raise self._too_big(page)
            if self._left() <= 0:
                raise PullError(self._time_up(page, f"{came} byte(s) of it came"))
            yield chunk

    def _too_big(self, page: int) -> PullError:
        limit = self.policy.page_bytes
        return PullError(f"{self.where(page)}: more than {limit} bytes ({limit / 2**20:g} MiB, "
                         f"{ENV['page_bytes']}) in one page; giving up")

    def _traced(self, event: str, info: dict) -> None:
        """httpcore's trace hook: keeps each new connection's socket for the watchdog."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self.sockets.append(info["return_value"].get_extra_info("socket"))
            if self.cut:
                _shut(self.sockets[-1])

    def _cut(self) -> None:
        """The watchdog, when the pull's time is up: shuts its connections down, so that a
        read ends even where no check of minilake's runs between bytes (a status line or
        headers sent a byte at a time, each byte within the read timeout)."""
        self.cut = True
        for connection in list(self.sockets):
            _shut(connection)

    def close(self) -> None:
        self.watchdog.cancel()
        self.client.close()
        _secrets.discard(self.secret)


def _shut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)       # wakes a blocked read; close() would not
    except OSError:                                 # closed already
        pass


def _decoded(chunks: Iterable[bytes], codings: list[str]) -> Iterator[bytes]:
    """``chunks`` with each Content-Encoding undone, the last one applied first; a coding
    minilake does not know passes unchanged, as with httpx."""
    for coding in reversed(codings):
        if coding in _WBITS:
            chunks = _inflated(chunks, coding)
    return iter(chunks)


def _inflated(chunks: Iterable[bytes], coding: str) -> Iterator[bytes]:
    """One gzip or deflate coding undone, never more than ``_PIECE`` bytes out of one step: a
    few kilobytes of gzip can hold gigabytes, and zlib without ``max_length`` makes them all at
    once. Deflate may come without its zlib header (httpx accepts both, so does minilake)."""
    inflater = zlib.decompressobj(_WBITS[coding])
    headless = coding == "deflate"
    for chunk in chunks:
        data = chunk
        while data and not inflater.eof:
            try:
                out = inflater.decompress(data, _PIECE)
            except zlib.error:
                if not headless:
                    raise _Undecodable(coding) from None
                inflater, headless = zlib.decompressobj(-zlib.MAX_WBITS), False
                continue
            headless = False
            data = inflater.unconsumed_tail
            if out:
                yield out
    while not inflater.eof and (out := inflater.decompress(b"", _PIECE)):
        yield out


def _config(source: str, day: dt.date | str, url: str | None) -> tuple[Source, dt.date, str,
                                                                       str]:
    if source not in SOURCES:
        raise ValueError(f"no source {source!r}; sources: {', '.join(SOURCES)}")
    day = day if isinstance(day, dt.date) else dt.date.fromisoformat(day)
    url = url or os.environ.get(URL_ENV, "")
    if not url:
        raise ValueError(f"no API URL: pass --url (url=) or set {URL_ENV}")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ValueError(f"not an http(s) URL: {shown(url)!r}")
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise ValueError(f"no API token: set the environment variable {TOKEN_ENV}")
    if not all(" " <= c <= "~" for c in token):      # httpx would quote it in its error
        raise ValueError(f"the API token in {TOKEN_ENV} is not printable ASCII (an HTTP "
                         f"header cannot carry it)")
    return SOURCES[source], day, url, token


def pull(source: str, date: dt.date | str, root: str | Path = ".", url: str | None = None, *,
         policy: RetryPolicy | None = None, progress: bool | None = None) -> PullResult:
    """Fetch one day of ``source`` from the API at ``url`` (else ``MINILAKE_API_URL``) with
    the token in ``MINILAKE_API_TOKEN``, and land it as ``landing_zone/<prefix>_YYYYMMDD.json``
    once every page has arrived. Raises :class:`PullError` (nothing landed) when the API
    refuses the token, keeps failing or passes a bound of ``policy`` (by default
    :meth:`RetryPolicy.from_env`)."""
    source_, day, url, token = _config(source, date, url)
    policy = policy or RetryPolicy.from_env()
    layout = Layout.of(root)
    file = source_.file_name(day, JSON)
    started = dt.datetime.now(dt.UTC)
    with hold(layout.root, "pull"):
        _remove_stale(layout)
        scratch = _scratch(layout, file)
        pages = _Pages(url, source_, day, token, policy)
        result = PullResult(source_.name, day, file, pages.where(1).partition(" of ")[2])
        _writing.add(scratch)
        try:
            bad = _fetch(pages, scratch, result, progress)
        except BaseException:
            scratch.unlink(missing_ok=True)         # nothing of a failed pull stays
            raise
        finally:
            _writing.discard(scratch)
            pages.close()
        if bad is not None:
            _quarantine_page(layout, source_, result, scratch, *bad)
        elif result.records == 0:
            scratch.unlink()
            result.outcome = "empty"
        else:
            _land(layout, source_, result, scratch)
        if result.outcome != "empty":
            _log(layout, result, started)
    return result


def _scratch_folder(layout: Layout) -> Path:
    """``tables/.pull/`` of a local root; for an S3 root, one folder of this machine's."""
    return (layout.scratch("pull") if storage.is_local(layout.root)
            else Path(tempfile.gettempdir()) / f"minilake-pull-{os.getuid()}")


def _scratch(layout: Layout, file: str) -> Path:
    """Where a pull writes its pages before the file lands: ``tables/.pull/`` of a local
    root (same file system, so landing is a rename), a local scratch folder for an S3 root
    (the finished file is uploaded as one object)."""
    folder = _scratch_folder(layout)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{file}.partial"


def _remove_stale(layout: Layout) -> None:
    """Remove the scratch files a killed pull left in ``tables/.pull/``: no finally block ran
    for them, and nothing else ever would. Called holding the root's lock, so no other process
    is pulling into the root; a file a pull of this process is writing is left alone. An S3
    root's scratch folder is shared by every root of this machine, so it is not cleared."""
    if not storage.is_local(layout.root):
        return
    for stale in sorted(_scratch_folder(layout).glob("*.partial")):
        if stale not in _writing:
            stale.unlink(missing_ok=True)
            log.info("pull: removed tables/.pull/%s, left by a pull that did not finish",
                     stale.name)


def _fetch(pages: _Pages, scratch: Path, result: PullResult,
           progress: bool | None) -> tuple[int, bytes, str] | None:
    """Write every page's records to ``scratch``; return (page, body, why) for a page that is
    not a JSON array, else None. Raises :class:`PullError` past the policy's pages."""
    bar = tqdm(desc=f"pull {result.source} {result.day}", unit="page",
               disable=None if progress is None else not progress)
    most = pages.policy.max_pages
    try:
        with scratch.open("w", encoding="utf-8", newline="\n") as out:
            out.write("[")
            page = 0
            while True:
                page += 1
                try:
                    records = pages.get(page)
                except _BadPage as bad:
                    return page, bad.body, bad.why
                if records is None:
                    result.reason = f"page {page} answered 404"
                    break
                if not records:
                    result.reason = f"page {page} was an empty array"
                    break
                if page > most:
                    raise PullError(f"{pages.where(page)}: still records after {most} pages, "
                                    f"the most a pull takes ({ENV['max_pages']}); giving up")
                _write(out, records, pages.secret, first=not result.records)
                result.records += len(records)
                result.pages += 1
                bar.update()
                crashpoint("pull.page_written")
            out.write("\n]\n" if result.records else "]\n")
    finally:
        bar.close()
    return None


def _write(out: TextIO, records: list, secret: _Secret, first: bool) -> None:
    """A page's records, one a line, numbers as they came, the token taken out of them in
    whichever form it came (the parse has undone any escaping)."""
    out.write(("\n" if first else ",\n") + secret.text(",\n".join(map(readers.json_text,
                                                                      records))))


def _land(layout: Layout, source: Source, result: PullResult, scratch: Path) -> None:
    """Move the finished file into the landing zone, unless the same bytes are here already."""
    landing = layout.landing / result.file
    archived = layout.archive(source.name) / result.file
    for there in (archived, landing):
        if there.exists() and storage.same_bytes(scratch, there):
            scratch.unlink()
            result.outcome = "unchanged"
            result.reason = there.relative_to(layout.root).as_posix()
            return
    if landing.exists():
        raise PullError(f"landing_zone/{result.file} is waiting to be split with other "
                        f"content; run split (or run) first, then pull again")
    crashpoint("pull.before_land")
    storage.move(scratch, landing)
    crashpoint("pull.after_land")
    result.outcome = "landed"


def _quarantine_page(layout: Layout, source: Source, result: PullResult, scratch: Path,
                     page: int, body: bytes, why: str) -> None:
    """A page that is not a JSON array makes the day a bad file (docs/formats.md): the page as it
    came goes to quarantine/<source>/ with the reason; nothing lands."""
    scratch.unlink()
    result.outcome = "quarantined"
    result.reason = f"page {page} of {result.url}: {why}"
    came = scratch.with_name(result.file)        # what came, under the day's name
    came.write_bytes(body)
    files.quarantine_file(layout, source, came, result.reason)    # the one way to quarantine
    log.error("%s", result.line())


def _log(layout: Layout, result: PullResult, started: dt.datetime) -> None:
    path = {"landed": layout.landing, "unchanged": layout.root,
            "quarantined": layout.quarantine(result.source)}[result.outcome]
    target = path / (result.reason if result.outcome == "unchanged" else result.file)
    data = target.read_bytes() if target.is_file() else b""
    logs.append_pull_log(layout, {
        "source": result.source, "file": result.file, "file_date": result.day,
        "url": result.url, "pages": result.pages, "records": result.records,
        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "outcome": result.outcome, "reason": result.reason, "started_at": started,
        "finished_at": dt.datetime.now(dt.UTC)})


def pulls(root: str | Path = ".") -> pd.DataFrame:
    """Every pull of the root, oldest first: source, date, URL (no credentials), pages,
    records, outcome, when."""
    return logs.read_pull_log(Layout.of(root))


__all__ = ["PullError", "PullResult", "RetryPolicy", "pull", "pulls", "shown"]
