"""The job server (docs/server.md): ``python -m minilake serve`` — FastAPI on uvicorn.

Every route but ``/health`` and ``/openapi.json`` requires ``Authorization: Bearer <token>``, a
token of the server's (:class:`Tokens`: ``MINILAKE_SERVER_TOKEN`` may do everything,
``MINILAKE_SERVER_READ_TOKEN`` only read, and a file named by ``MINILAKE_SERVER_TOKENS_FILE``
gives more, each with its scopes; each compared in constant time); without one the server does
not start. A token without the scope a route needs is answered 403. Jobs (``run``, ``pull``,
``export``) run in the background, one at a time in the order they came (:mod:`.jobs`):
``POST /jobs/<kind>`` answers 202 with the job's record and its ``Location``, ``GET
/jobs/{id}`` its state and result, ``GET /jobs/{id}/log`` its lines, ``DELETE /jobs/{id}``
cancels it; ``?wait=true`` answers when it is done, as the server did before jobs had records
(200 with the result). A job submitted while another process holds the root answers 409 naming
the holder. Bad parameters answer 422, unknown tables or jobs 404, and nothing answers with a
traceback. ``GET /tables/{name}`` pages a table in the protocol of docs/formats.md, so that
``minilake pull`` can read from another minilake (``?date=`` gives the source's columns of the
versions valid that day, as a delivery; ``?as_of=`` or nothing gives ``read_table``'s rows).
The API's URL for ``POST /jobs/pull`` is the server's own setting (``MINILAKE_API_URL``), never
a request's, and exports are written under the root's ``exports/`` only.

Hostile clients cost little. A request is judged on its headers before its body is read: without
a token it is answered 401 and the connection closed. A body is at most
``MINILAKE_SERVER_MAX_BODY_BYTES`` (1 MiB by default): a larger ``Content-Length`` is answered 413
unread, a chunked body is counted as it streams and cut off with 413 once past the limit. A body
must arrive whole within ``MINILAKE_SERVER_BODY_TIMEOUT`` seconds (30 by default), or it is
answered 408 and the connection closed. A request's headers must arrive within
``MINILAKE_SERVER_HEADER_TIMEOUT`` seconds (10 by default) of the connection or of the previous
answer, or the connection is closed (after a 408 if part of a request came); headers still
incomplete past 16 KiB are answered 431 (h11's bound). ``/docs`` and ``/redoc`` are off, so
nothing is loaded from the network; the OpenAPI document stays at ``/openapi.json``.

Every answer with rows, status or a job's result is written by ``minilake.formats.jsontext``, so
that a reader taking each JSON number as a double (JavaScript) still gets every value exact:
identifiers (``customer_id``, ``row_hash``) as strings of their digits, dates as
``YYYY-MM-DD``, floats as their shortest text, money without float noise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import hmac
import json
import logging
import math
import os
import re
import threading
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

import minilake
from minilake.apps.jobs import Job, JobFailed, Jobs
from minilake.contract.sources import SOURCES
from minilake.formats import jsontext
from minilake.inbound.pull import VERSION_HEADER, PullError
from minilake.lake.layout import Layout
from minilake.lake.lock import RootBusy, hold
from minilake.outbound import tablepages
from minilake.web import listen

TOKEN_ENV = "MINILAKE_SERVER_TOKEN"
READ_TOKEN_ENV = "MINILAKE_SERVER_READ_TOKEN"
TOKENS_FILE_ENV = "MINILAKE_SERVER_TOKENS_FILE"
NEXT_HEADER = "Minilake-Next-Cursor"            # the next page's cursor (also in Link)
SCOPES = ("read", "jobs")       # read: tables, status, reports; jobs: every /jobs route
MAX_BODY_ENV = "MINILAKE_SERVER_MAX_BODY_BYTES"
BODY_TIMEOUT_ENV = "MINILAKE_SERVER_BODY_TIMEOUT"
HEADER_TIMEOUT_ENV = "MINILAKE_SERVER_HEADER_TIMEOUT"
OPEN_PATHS = frozenset({"/health", "/openapi.json"})     # answered without the token
MAX_PAGE_SIZE = 100_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one request may cost the server: the size of its body, and how long its headers
    and its body may take to arrive."""

    max_body_bytes: int = 1 << 20
    body_timeout: float = 30.0
    header_timeout: float = 10.0

    @classmethod
    def from_env(cls) -> Limits:
        """The limits set in the environment, the defaults for those not set."""
        return cls(max_body_bytes=_setting(MAX_BODY_ENV, int, cls.max_body_bytes),
                   body_timeout=_setting(BODY_TIMEOUT_ENV, float, cls.body_timeout),
                   header_timeout=_setting(HEADER_TIMEOUT_ENV, float, cls.header_timeout))


def _setting(name: str, kind: type, default: float) -> float:
    """A positive number from the environment: a typo refuses the start rather than leaving
    the server without a limit."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < math.inf:
        raise ValueError(f"{name}={text!r}: a positive "
                         f"{'whole number' if kind is int else 'number'} is required")
    return value


class Tokens:
    """The server's tokens, each with its scopes (``read``, ``jobs``)."""

    def __init__(self, scoped: dict[str, frozenset[str]]):
        if not scoped:
            raise ValueError(f"refusing to start without a token: set {TOKEN_ENV} (clients "
                             f"send 'Authorization: Bearer <token>')")
        self.scoped = [(token.encode(), scopes) for token, scopes in scoped.items()]

    @classmethod
    def from_env(cls) -> Tokens:
        """``MINILAKE_SERVER_TOKEN`` (every scope), ``MINILAKE_SERVER_READ_TOKEN`` (read), and
        the lines of ``MINILAKE_SERVER_TOKENS_FILE``: ``<scopes> <token>``, the scopes joined
        by commas (``read``, ``jobs``, ``read,jobs``); a line starting with ``#`` is a comment
        (a token may hold ``#``). A token given twice has both its scopes. A line it cannot
        read refuses the start, naming the file and line, never the token."""
        scoped: dict[str, frozenset[str]] = {}
        for name, scopes in ((TOKEN_ENV, SCOPES), (READ_TOKEN_ENV, ("read",))):
            token = os.environ.get(name, "").strip()
            if token:
                scoped[token] = scoped.get(token, frozenset()) | frozenset(scopes)
        listed = os.environ.get(TOKENS_FILE_ENV, "").strip()
        if listed:
            try:
                lines = open(listed, encoding="utf-8").read().splitlines()
            except (OSError, UnicodeDecodeError) as error:
                raise ValueError(f"{TOKENS_FILE_ENV}={listed}: cannot be read "
                                 f"({type(error).__name__})") from None
            for number, line in enumerate(lines, start=1):
                words = line.split()
                if not words or words[0].startswith("#"):      # a comment is a line of its own
                    continue
                scopes = frozenset(words[0].split(",")) if len(words) == 2 else frozenset()
                if not scopes or not scopes <= set(SCOPES) or not words[1].isascii() or \
                        not words[1].isprintable():
                    raise ValueError(f"{listed}, line {number}: not '<scopes> <token>' with "
                                     f"scopes of {', '.join(SCOPES)} joined by commas and a "
                                     f"token of printable ASCII")
                scoped[words[1]] = scoped.get(words[1], frozenset()) | scopes
        return cls(scoped)

    def scopes(self, authorization: str | None) -> frozenset[str] | None:
        """The scopes of the token ``authorization`` bears (``Bearer <token>``), None if it
        bears none of the server's; each token is compared, in constant time, whatever
        matched before."""
        scheme, _, given = (authorization or "").partition(" ")
        found = None
        for token, scopes in self.scoped:
            if hmac.compare_digest(given.encode(), token):
                found = scopes
        return found if scheme.lower() == "bearer" else None


class Refused(Exception):
    """A request the gate answers itself, from its headers or its body's arrival."""

    def __init__(self, status: int, detail: str, headers: tuple = ()):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers

    async def answer(self, send) -> None:
        """One line of JSON, and the connection closed: what the client still sends is not
        read (and a half-sent body could not be told from the next request anyway)."""
        body = json.dumps({"detail": self.detail}, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": self.status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"), *self.headers]})
        await send({"type": "http.response.body", "body": body})


class Gate:
    """Pure ASGI middleware in front of the app: FastAPI reads a body whole before any
    dependency could refuse the request, so the token and the declared size are checked here
    on the headers alone, and the body is read here, bounded in size and time, then handed to
    the app whole."""

    def __init__(self, app, tokens: Tokens, limits: Limits):
        self.app, self.tokens, self.limits = app, tokens, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self.check_headers(scope)
            body = await self.read_body(receive)
        except Refused as refused:
            await refused.answer(send)
            return
        if body is not None:               # None: the client left before its body was whole
            await self.app(scope, _replay(body, receive), send)

    def check_headers(self, scope) -> None:
        """401 for a wrong token, 413 for a declared size over the limit: no byte of the body
        is worth reading for either."""
        headers = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value.decode("latin-1"))
        if scope["path"] not in OPEN_PATHS and self.tokens.scopes(
                headers.get(b"authorization")) is None:
            raise Refused(401, "missing or wrong bearer token",
                          ((b"www-authenticate", b"Bearer"),))
        length = headers.get(b"content-length", "")    # h11 let only digits through
        if length.isascii() and length.isdigit() and int(length) > self.limits.max_body_bytes:
            raise Refused(413, f"the request body is over {self.limits.max_body_bytes} bytes")

    async def read_body(self, receive) -> bytes | None:
        """The whole body, counted as it streams (a chunked body declares no size), or None
        if the client left; refused once past the size limit or the body timeout."""
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limits.max_body_bytes:
                        raise Refused(413, f"the request body is over "
                                           f"{self.limits.max_body_bytes} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise Refused(408, f"the request body did not arrive within "
                               f"{self.limits.body_timeout:g} s") from None


def _replay(body: bytes, receive):
    """``receive`` for the app: the body the gate read, then what the client does next (a
    disconnect, for an app that listens for one)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        return pending.pop() if pending else await receive()
    return replayed


class RunJob(BaseModel):
    allow_mass_delete: bool = False


class PullJob(BaseModel):
    source: Literal["customer", "product", "sales"]
    date: dt.date


class ExportJob(BaseModel):
    table: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_]+$")
    format: Literal["avro", "parquet", "csv"] = "avro"
    as_of: dt.date | None = None
    version: int | None = Field(default=None, ge=0)
    current: bool = False


Wait = Annotated[bool, Query(description="answer once the job is done, with its result")]
RUN_REPORT = re.compile(r"\d{8}T\d{12}Z\.(?:html|json)")     # runreport.run_id + suffix


def _report_file(path, what: str) -> Response:
    """A report file as it is (the run pages link each other relatively, as on disk)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HTTPException(404, f"no {what} yet (a run writes it)") from None
    kind = "application/json" if path.name.endswith(".json") else "text/html; charset=utf-8"
    return Response(data, media_type=kind)


def _json(value, status: int = 200, headers: dict | None = None) -> Response:
    """An answer written by ``jsontext`` (tables in it as records): exact for a reader that
    takes every JSON number as a double."""
    return Response(jsontext.dumps(value), status_code=status, headers=headers,
                    media_type="application/json")


class _Shared:
    """One answer read for every request that comes while it is being read (a status read
    costs ~0.15 s at 10x; fifty clients asking at once would each read it): a request waits
    for the read under way if one is, else starts one. So an answer may have begun to be
    read before its request came, by at most one read's time; none is kept after."""

    def __init__(self, read):
        self.read, self.lock = read, threading.Lock()
        self.under_way: concurrent.futures.Future | None = None

    def get(self) -> bytes:
        with self.lock:
            mine = self.under_way is None
            if mine:
                self.under_way = concurrent.futures.Future()
            future = self.under_way
        if not mine:
            return future.result()
        try:
            future.set_result(self.read())
        except BaseException as error:
            future.set_exception(error)
        finally:
            with self.lock:
                self.under_way = None
        return future.result()


def _numbered_page(layout: Layout, name: str, as_of: dt.date | None, date: dt.date | None,
                   version: int | None, page: int, page_size: int) -> Response:
    """Page ``page`` of the pull protocol (docs/formats.md): ``read_table``'s rows in key
    order, of ``version`` if given, else of the latest, whose number the answer names (a
    client asks for it with the next pages)."""
    read = tablepages.pinned(layout, name, as_of or date, version, date is not None)
    frame = minilake.read_table(name, as_of=as_of or date, root=layout.root,
                                version=read.version)
    if read.delivery:
        frame = frame[SOURCES[name].columns]
    chunk = frame.iloc[(page - 1) * page_size:page * page_size]
    if not len(chunk):
        raise HTTPException(404, f"no page {page}: {name} has "
                            f"{-(-len(frame) // page_size)} page(s) of {page_size}")
    return _json(chunk, headers={VERSION_HEADER: str(read.version)})


def _encoding(accepted: str) -> str | None:
    """The compression a stream is sent with: the first of ``tablepages.ENCODINGS`` the
    client's ``Accept-Encoding`` takes (not with ``q=0``), else none."""
    taken = set()
    for item in accepted.lower().split(","):
        coding, _, weight = item.partition(";")
        name, _, value = weight.replace(" ", "").partition("=")
        try:
            refused = name == "q" and float(value) == 0
        except ValueError:
            refused = False
        if not refused:
            taken.add(coding.strip())
    return next((e for e in tablepages.ENCODINGS if e in taken), None)


def _work(layout: Layout):
    """What a job does, by kind: the public API's call, and the summary the command line
    prints; a failure as :class:`JobFailed` with the status the route answered with."""

    def work(kind: str, params: dict, say) -> dict:
        try:
            if kind == "run":
                result = minilake.run(layout.root, allow_mass_delete=params["allow_mass_delete"],
                                      progress=False, say=say)
                return {"ok": result.ok, "lines": result.lines(), "quarantined": [
                    {"source": f.source, "file": f.file, "reason": f.reason}
                    for f in result.ingest.quarantined]}
            if kind == "pull":
                pulled = minilake.pull(params["source"], params["date"], layout.root,
                                       progress=False)
                say(pulled.line())
                return {"ok": pulled.ok, "outcome": pulled.outcome, "line": pulled.line(),
                        "pages": pulled.pages, "records": pulled.records}
            exported = minilake.export(params["table"], format=params["format"],
                                       as_of=params["as_of"], version=params["version"],
                                       current=params["current"], root=layout.root,
                                       progress=False)
            said = {"path": str(exported.path.relative_to(layout.root)),
                    "rows": exported.rows, "bytes": exported.bytes, "format": exported.format}
            say(f"export: {said['rows']} row(s) to {said['path']}")
            return said
        except RootBusy as error:
            raise JobFailed(409, f"the root is busy: {error}") from None
        except PullError as error:
            raise JobFailed(502, str(error)) from None
        except FileNotFoundError as error:
            raise JobFailed(404, str(error).splitlines()[0]) from None
        except ValueError as error:
            raise JobFailed(422, str(error).splitlines()[0]) from None
    return work


def create_app(root: str, tokens: Tokens, limits: Limits | None = None) -> FastAPI:
    """The job server over ``root``; a token of ``tokens`` is required of every client, and
    requests are held to ``limits`` (by default those of the environment)."""

    layout = Layout.of(root)               # a one-line error if the root does not exist
    app = FastAPI(title="minilake job server",
                  description="Jobs and tables of one minilake root (docs/server.md).",
                  docs_url=None, redoc_url=None)      # their pages load scripts from a CDN
    app.add_middleware(Gate, tokens=tokens, limits=limits or Limits.from_env())

    def needs(scope: str):
        def allowed(authorization: Annotated[str | None, Header()] = None) -> None:
            """The gate refused requests without a token already; this names the header in
            the OpenAPI document, and answers 403 for a token without the scope."""
            scopes = tokens.scopes(authorization)
            if scopes is None:
                raise HTTPException(401, "missing or wrong bearer token",
                                    headers={"WWW-Authenticate": "Bearer"})
            if scope not in scopes:
                raise HTTPException(403, f"this token may not use this route (it needs the "
                                         f"'{scope}' scope)")
        return [Depends(allowed)]

    guarded, jobs_only = needs("read"), needs("jobs")
    work = _work(layout)
    jobs = Jobs(layout, work)
    app.state.jobs = jobs

    def submitted(kind: str, params: dict, wait: bool) -> Response:
        """A job queued: 202 with its record and ``Location``; with ``wait``, its result
        once done (200), or its failure's status and line. Refused with 409 while another
        process holds the root (nothing of this server's queued or running: else the job
        waits its turn)."""
        def root_free() -> None:
            with hold(layout.root, f"the job server, checking the root is free for {kind}"):
                pass
        try:
            jobs.free(root_free)
        except RootBusy as error:
            raise HTTPException(409, f"the root is busy: {error}") from None
        job = jobs.submit(kind, params)
        if not wait:
            return _json(job.record(), 202, {"Location": job.location})
        jobs.wait(job)
        if job.state == "succeeded":
            return _json(job.result)
        return JSONResponse({"detail": job.error, "job": job.id}, status_code=job.status or 500)

    @app.exception_handler(RequestValidationError)
    async def unprocessable(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in error.errors())
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(error).splitlines()[0]}, status_code=422)

    @app.exception_handler(FileNotFoundError)
    async def not_found(request: Request, error: FileNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(error).splitlines()[0]}, status_code=404)

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(error).__name__}); see the "
                             f"server's log"}, status_code=500)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/jobs/run", dependencies=jobs_only, status_code=202)
    def run_job(body: RunJob | None = None, wait: Wait = False) -> Response:
        return submitted("run", (body or RunJob()).model_dump(mode="json"), wait)

    @app.post("/jobs/pull", dependencies=jobs_only, status_code=202)
    def pull_job(body: PullJob, wait: Wait = False) -> Response:
        return submitted("pull", body.model_dump(mode="json"), wait)

    @app.post("/jobs/export", dependencies=jobs_only, status_code=202)
    def export_job(body: ExportJob, wait: Wait = False) -> Response:
        return submitted("export", body.model_dump(mode="json"), wait)

    @app.get("/jobs", dependencies=jobs_only)
    def job_list() -> Response:
        """The latest jobs, newest first."""
        return _json({"jobs": [job.record() for job in jobs.latest()]})

    def known(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} (GET /jobs lists them)")
        return job

    @app.get("/jobs/{job_id}", dependencies=jobs_only)
    def job_state(job_id: str) -> Response:
        return _json(known(job_id).record())

    @app.get("/jobs/{job_id}/log", dependencies=jobs_only)
    def job_log(job_id: str) -> Response:
        job = known(job_id)
        return _json({"id": job.id, "state": job.state, "lines": jobs.log_of(job)})

    @app.delete("/jobs/{job_id}", dependencies=jobs_only, status_code=202)
    def job_cancel(job_id: str) -> Response:
        """Cancel a queued job at once, a running one at its next file boundary (its state
        turns ``cancelled`` then); 409 for a job that has finished."""
        try:
            return _json(jobs.cancel(known(job_id)).record(), 202)
        except JobFailed as refused:
            raise HTTPException(refused.status, str(refused)) from None

    def read_status() -> bytes:
        return jsontext.dumps({"sources": minilake.status(layout.root),
                               "erasures": minilake.erasures(layout.root),
                               "pulls": minilake.pulls(layout.root)}).encode()

    shared_status = _Shared(read_status)

    @app.get("/status", dependencies=guarded)
    def status() -> Response:
        """The root's status; requests that come while it is being read share that read."""
        return Response(shared_status.get(), media_type="application/json")

    @app.get("/reports/", dependencies=guarded)
    @app.get("/reports/index.html", dependencies=guarded)
    def runs_index() -> Response:
        """reports/index.html: every run's report (docs/quality.md)."""
        return _report_file(layout.reports / "index.html", "the run reports' index")

    @app.get("/reports/runs/{name}", dependencies=guarded)
    def run_report(name: str) -> Response:
        """One run's report, its page (``<run-id>.html``) or its data (``.json``)."""
        if not RUN_REPORT.fullmatch(name):
            raise HTTPException(404, f"no run report {name!r}: a name is "
                                     f"<run-id>.html or <run-id>.json (GET /reports/)")
        return _report_file(layout.reports / "runs" / name, f"run report {name}")

    @app.get("/tables/{name}", dependencies=guarded)
    def table_page(name: str, request: Request, as_of: dt.date | None = None,
                   date: dt.date | None = None,
                   version: Annotated[int | None, Query(ge=0)] = None,
                   page: Annotated[int | None, Query(ge=1)] = None,
                   page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 1000,
                   cursor: Annotated[str | None, Query(max_length=4096)] = None,
                   format: Literal["json", "arrow", "parquet", "ndjson"] = "json"
                   ) -> Response:
        """A table read pinned to one version (docs/server.md, tables): pages with a cursor
        (the first without one), the pull protocol's ``?page=N``, or the whole read as a
        stream (``format``)."""
        if as_of is not None and date is not None:
            raise ValueError("as_of and date exclude each other (date: a delivery of the "
                             "versions valid that day, as_of: those rows with every column)")
        if cursor is not None and (page, as_of, date, version) != (None,) * 4:
            raise ValueError("a cursor names its read and its page size: give it alone")
        if format != "json":
            if cursor is not None or page is not None:
                raise ValueError(f"format={format} streams the whole read: no page or cursor")
            read = tablepages.pinned(layout, name, as_of or date, version, date is not None)
            encoding = _encoding(request.headers.get("accept-encoding", ""))
            return StreamingResponse(
                tablepages.stream(layout, read, format, encoding),
                media_type=tablepages.FORMATS[format], headers={
                    VERSION_HEADER: str(read.version),
                    **({"Content-Encoding": encoding} if encoding else {})})
        if page is not None:
            return _numbered_page(layout, name, as_of, date, version, page, page_size)
        at = (tablepages.Cursor.parse(cursor, name, MAX_PAGE_SIZE) if cursor is not None else
              tablepages.Cursor(tablepages.pinned(layout, name, as_of or date, version,
                                                  date is not None), page_size))
        rows, onward = tablepages.page(layout, at)
        headers = {VERSION_HEADER: str(at.read.version)}
        if onward is not None:
            token = onward.token()
            headers |= {NEXT_HEADER: token,
                        "Link": f'</tables/{name}?cursor={token}>; rel="next"'}
        return Response(jsontext.records(rows), media_type="application/json",
                        headers=headers)

    return app


def serve(root: str, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    tokens = Tokens.from_env()
    limits = Limits.from_env()
    app = create_app(root, tokens, limits)

    listen(app, host, port, f"minilake job server: serving {Layout.of(root).root}",
           header_timeout=limits.header_timeout)
