"""A day's delivery pulled from an HTTP API into landing_zone/ (SPEC §8).

``GET {url}/{source}?date=YYYY-MM-DD&page=N`` for N = 1, 2, … until a 404 or an empty array,
each page a JSON array of records. The records are written, as they arrive, to a scratch file
outside the landing zone (``tables/.pull/``) with every value exactly as it came (a number as
its literal, so ``1.10`` stays ``1.10``); only when the last page has arrived does the day land,
renamed in one step, as ``landing_zone/<prefix>_YYYYMMDD.json``. From there on it is an
ordinary delivery of the source's JSON form: split, validation, error report, SCD2, ingest log.

The HTTP client is httpx; retries are stamina's (exponential backoff with jitter, bounded), with
the wait taken from ``Retry-After`` where the server gives one. The token comes from the
environment only, travels in the ``Authorization`` header only, and is never part of a message,
a log line or a file.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import logging
import os
import tempfile
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pandas as pd
import stamina
from tqdm import tqdm

from minilake import storage
from minilake.crashpoints import crashpoint
from minilake.inbound import readers
from minilake.inbound.landing import superseded_name
from minilake.layout import Layout
from minilake.load import tables
from minilake.lock import hold
from minilake.sources import JSON, SOURCES, Source

log = logging.getLogger(__name__)

TOKEN_ENV = "MINILAKE_API_TOKEN"
URL_ENV = "MINILAKE_API_URL"
RETRIED_STATUS = {429, 500, 502, 503, 504}

# The page being fetched, and the attempts it gets, for the line said before each retry.
_fetching: ContextVar[tuple[str, int]] = ContextVar("fetching", default=("a page", 0))


def _said(details: stamina.instrumentation.RetryDetails) -> None:
    """stamina's retry hook: one line naming the page, what went wrong and the wait."""
    where, attempts = _fetching.get()
    log.warning("%s: %s; attempt %d of %d in %.1f s", where, _reason(details.caused_by),
                details.retry_num + 1, attempts, details.wait_for)


stamina.instrumentation.set_on_retry_hooks([_said])


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a pull tries: ``attempts`` per page, exponential waits from ``wait_initial``
    to ``wait_max`` seconds (plus up to ``wait_jitter``), a server's ``Retry-After`` honoured
    up to ``retry_after_max`` seconds (a longer one fails the pull at once, saying so), and
    ``timeout`` seconds for each request."""

    attempts: int = 6
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 0.5
    retry_after_max: float = 120.0
    timeout: float = 30.0


class PullError(RuntimeError):
    """The pull failed; nothing landed. The message is one line naming the URL and page."""


class _Busy(Exception):
    """A status worth retrying (429, 5xx), with the server's ``Retry-After`` in seconds."""

    def __init__(self, status: int, phrase: str, retry_after: float | None):
        super().__init__(f"{status} {phrase}")
        self.status, self.retry_after = status, retry_after


class _BadPage(Exception):
    """A page that is no JSON array: the day is a bad file (SPEC §3)."""

    def __init__(self, body: bytes, why: str, retry: bool):
        super().__init__(why)
        self.body, self.why, self.retry = body, why, retry


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
    """An exception as a few words (never the request's headers)."""
    if isinstance(error, _Busy):
        return f"answered {error}"
    if isinstance(error, _BadPage):
        return error.why
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}" + (f": {text}" if text else "")


class _Pages:
    """One source and date of an API, page by page."""

    def __init__(self, base: str, source: Source, day: dt.date, token: str,
                 policy: RetryPolicy):
        self.url = f"{base.rstrip('/')}/{source.name}"
        self.day, self.policy = day, policy
        self.client = httpx.Client(timeout=policy.timeout, follow_redirects=False,
                                   headers={"Authorization": token})

    def where(self, page: int) -> str:
        return f"page {page} of {shown(self.url)}?date={self.day.isoformat()}"

    def get(self, page: int) -> list | None:
        """The records of page ``page``, or None when there is no such page (404). Raises
        :class:`_BadPage` for a page that is no JSON array (a body that is not JSON at all, as
        a connection cut without a length gives, after the retries)."""
        policy = self.policy

        def retried(error: Exception) -> bool | float:
            if isinstance(error, _BadPage):
                return error.retry
            if isinstance(error, _Busy):
                if error.retry_after is None:
                    return True
                if error.retry_after > policy.retry_after_max:
                    return False
                return error.retry_after
            return isinstance(error, httpx.TransportError)

        _fetching.set((self.where(page), policy.attempts))
        try:
            for attempt in stamina.retry_context(
                    on=retried, attempts=policy.attempts, timeout=None,
                    wait_initial=policy.wait_initial, wait_max=policy.wait_max,
                    wait_jitter=policy.wait_jitter):
                with attempt:
                    return self._once(page)
        except _Busy as error:
            if error.retry_after is not None and error.retry_after > policy.retry_after_max:
                raise PullError(f"{self.where(page)}: answered {error} asking to retry after "
                                f"{error.retry_after:.0f} s, longer than the "
                                f"{policy.retry_after_max:.0f} s a pull waits") from None
            raise PullError(f"{self.where(page)}: {_reason(error)} {policy.attempts} time(s); "
                            f"giving up") from None
        except httpx.TransportError as error:
            raise PullError(f"{self.where(page)}: {_reason(error)} ({policy.attempts} "
                            f"attempt(s)); giving up") from None
        raise AssertionError("unreachable")

    def _once(self, page: int) -> list | None:
        body = self._body(page)
        if body is None:
            return None
        try:
            value = readers.parse_json(body.decode("utf-8-sig"), exact=True)
        except UnicodeDecodeError as error:
            raise _BadPage(body, f"not UTF-8: {error.reason} at byte {error.start}",
                           retry=False) from None
        except json.JSONDecodeError as error:    # cut short, perhaps: worth another try
            raise _BadPage(body, f"not JSON: {error.msg} (line {error.lineno})",
                           retry=True) from None
        if not isinstance(value, list):
            raise _BadPage(body, f"not a JSON array but {readers.json_kind(value)}",
                           retry=False)
        return value

    def _body(self, page: int) -> bytes | None:
        response = self.client.get(self.url, params={"date": self.day.isoformat(),
                                                     "page": page})
        status = response.status_code
        if status == 404:
            return None
        if status in (401, 403):
            raise PullError(f"{self.where(page)}: the API refused the token ({status} "
                            f"{response.reason_phrase}; set {TOKEN_ENV})")
        if status in RETRIED_STATUS:
            raise _Busy(status, response.reason_phrase, _retry_after(response))
        if status == 204:
            return b"[]"
        if not 200 <= status < 300:
            said = " ".join(response.text.split())[:200]
            raise PullError(f"{self.where(page)}: answered {status} {response.reason_phrase}"
                            + (f": {said}" if said else ""))
        return response.content

    def close(self) -> None:
        self.client.close()


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
    return SOURCES[source], day, url, token


def pull(source: str, date: dt.date | str, root: str | Path = ".", url: str | None = None, *,
         policy: RetryPolicy | None = None, progress: bool | None = None) -> PullResult:
    """Fetch one day of ``source`` from the API at ``url`` (else ``MINILAKE_API_URL``) with
    the token in ``MINILAKE_API_TOKEN``, and land it as ``landing_zone/<prefix>_YYYYMMDD.json``
    once every page has arrived. Raises :class:`PullError` (nothing landed) when the API
    refuses the token or keeps failing."""
    source_, day, url, token = _config(source, date, url)
    layout = Layout.of(root)
    file = source_.file_name(day, JSON)
    pages = _Pages(url, source_, day, token, policy or RetryPolicy())
    result = PullResult(source_.name, day, file, pages.where(1).partition(" of ")[2])
    started = dt.datetime.now(dt.UTC)
    with hold(layout.root, "pull"):
        scratch = _scratch(layout, file)
        try:
            bad = _fetch(pages, scratch, result, progress)
        except BaseException:
            scratch.unlink(missing_ok=True)         # nothing of a failed pull stays
            raise
        finally:
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


def _scratch(layout: Layout, file: str) -> Path:
    """Where a pull writes its pages before the file lands: ``tables/.pull/`` of a local
    root (same file system, so landing is a rename), a local scratch folder for an S3 root
    (the finished file is uploaded as one object)."""
    folder = (layout.root / "tables" / ".pull" if storage.is_local(layout.root)
              else Path(tempfile.gettempdir()) / f"minilake-pull-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{file}.partial"


def _fetch(pages: _Pages, scratch: Path, result: PullResult,
           progress: bool | None) -> tuple[int, bytes, str] | None:
    """Write every page's records to ``scratch``; return (page, body, why) for a page that is
    not a JSON array, else None."""
    bar = tqdm(desc=f"pull {result.source} {result.day}", unit="page",
               disable=None if progress is None else not progress)
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
                for record in records:
                    out.write(",\n" if result.records else "\n")
                    out.write(readers.json_text(record))
                    result.records += 1
                result.pages += 1
                bar.update()
                crashpoint("pull.page_written")
            out.write("\n]\n" if result.records else "]\n")
    finally:
        bar.close()
    return None


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
    """A page that is not a JSON array makes the day a bad file (SPEC §3): the page as it
    came goes to quarantine/<source>/ with the reason; nothing lands."""
    scratch.unlink()
    folder = layout.quarantine(source.name)
    target = folder / result.file
    result.outcome = "quarantined"
    result.reason = f"page {page} of {result.url}: {why}"
    if target.exists():
        storage.move(target, superseded_name(target))
    storage.write_bytes(folder / f"{result.file}.reason.txt",
                        (result.reason + "\n").encode("utf-8"))
    storage.write_bytes(target, body)
    log.error("%s", result.line())


def _log(layout: Layout, result: PullResult, started: dt.datetime) -> None:
    path = {"landed": layout.landing, "unchanged": layout.root,
            "quarantined": layout.quarantine(result.source)}[result.outcome]
    target = path / (result.reason if result.outcome == "unchanged" else result.file)
    data = target.read_bytes() if target.is_file() else b""
    tables.append_pull_log(layout, {
        "source": result.source, "file": result.file, "file_date": result.day,
        "url": result.url, "pages": result.pages, "records": result.records,
        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "outcome": result.outcome, "reason": result.reason, "started_at": started,
        "finished_at": dt.datetime.now(dt.UTC)})


def pulls(root: str | Path = ".") -> pd.DataFrame:
    """Every pull of the root, oldest first: source, date, URL (no credentials), pages,
    records, outcome, when."""
    return tables.read_pull_log(Layout.of(root))


__all__ = ["PullError", "PullResult", "RetryPolicy", "pull", "pulls", "shown"]
