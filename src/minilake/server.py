"""The job server (SPEC §10): ``python -m minilake serve`` — FastAPI on uvicorn.

Every route but ``/health`` requires ``Authorization: Bearer <MINILAKE_SERVER_TOKEN>`` (compared
in constant time); without a token set the server does not start. Routes are a thin layer over
the public API: ``run``, ``pull``, ``export``, ``status``, ``read_table``. One job at a time: a
job that cannot take the root (another job here, or another process's lock) answers 409 naming
the holder. Bad parameters answer 422, unknown tables 404, and nothing answers with a
traceback. ``GET /tables/{name}`` pages a table in the protocol of SPEC §8, so that
``minilake pull`` can read from another minilake (``?date=`` gives the source's columns of the
versions valid that day, as a delivery; ``?as_of=`` or nothing gives ``read_table``'s rows).
The API's URL for ``POST /jobs/pull`` is the server's own setting (``MINILAKE_API_URL``), never a
request's, and exports are written under the root's ``exports/`` only.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
import socket
import threading
from typing import Annotated, Literal

import pyarrow as pa
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

TOKEN_ENV = "MINILAKE_SERVER_TOKEN"
MAX_PAGE_SIZE = 100_000
log = logging.getLogger(__name__)


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


def _iso(value: object) -> str:
    """Dates and times in JSON: ISO text."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def create_app(root: str, token: str) -> FastAPI:
    """The job server over ``root``; ``token`` is required of every client."""
    import minilake
    from minilake.layout import Layout
    from minilake.lock import RootBusy

    if not token:
        raise ValueError(f"no server token: set {TOKEN_ENV}")
    layout = Layout.of(root)               # a one-line error if the root does not exist
    app = FastAPI(title="minilake job server",
                  description="Jobs and tables of one minilake root (SPEC §10).")
    busy = threading.Lock()
    running: dict[str, str] = {}

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(),
                                                                 token.encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorized)]

    def job(name: str, call):
        """Run a job holding the root, or answer 409 naming who holds it."""
        if not busy.acquire(blocking=False):
            raise HTTPException(409, f"the root is busy: job {running.get('job', '?')} of this "
                                f"server (since {running.get('since', '?')})")
        try:
            running.update(job=name, since=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
            return call()
        except RootBusy as error:
            raise HTTPException(409, f"the root is busy: {error}") from None
        finally:
            running.clear()
            busy.release()

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

    @app.post("/jobs/run", dependencies=guarded)
    def run_job(body: RunJob | None = None) -> dict:
        options = body or RunJob()
        result = job("run", lambda: minilake.run(layout.root, allow_mass_delete=(
            options.allow_mass_delete), progress=False))
        return {"ok": result.ok, "lines": result.lines(),
                "quarantined": [{"source": f.source, "file": f.file, "reason": f.reason}
                                for f in result.ingest.quarantined]}

    @app.post("/jobs/pull", dependencies=guarded)
    def pull_job(body: PullJob) -> JSONResponse:
        from minilake.inbound.api_pull import PullError

        try:
            result = job("pull", lambda: minilake.pull(body.source, body.date, layout.root,
                                                       progress=False))
        except PullError as error:
            return JSONResponse({"detail": str(error)}, status_code=502)
        return JSONResponse({"ok": result.ok, "outcome": result.outcome, "line": result.line(),
                             "pages": result.pages, "records": result.records},
                            status_code=200)

    @app.post("/jobs/export", dependencies=guarded)
    def export_job(body: ExportJob) -> dict:
        result = job("export", lambda: minilake.export(
            body.table, format=body.format, as_of=body.as_of, version=body.version,
            current=body.current, root=layout.root, progress=False))
        return {"path": str(result.path.relative_to(layout.root)), "rows": result.rows,
                "bytes": result.bytes, "format": result.format}

    @app.get("/status", dependencies=guarded)
    def status() -> dict:
        def records(frame) -> list[dict]:
            return json.loads(frame.to_json(orient="records", date_format="iso"))
        return {"sources": records(minilake.status(layout.root)),
                "erasures": records(minilake.erasures(layout.root)),
                "pulls": records(minilake.pulls(layout.root))}

    @app.get("/tables/{name}", dependencies=guarded)
    def table_page(name: str, as_of: dt.date | None = None, date: dt.date | None = None,
                   version: Annotated[int | None, Query(ge=0)] = None,
                   page: Annotated[int, Query(ge=1)] = 1,
                   page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 1000
                   ) -> Response:
        from minilake.sources import SOURCES

        if as_of is not None and date is not None:
            raise ValueError("as_of and date exclude each other (date: a delivery of the "
                             "versions valid that day, as_of: those rows with every column)")
        frame = minilake.read_table(name, as_of=as_of or date, root=layout.root,
                                    version=version)
        if date is not None and name in SOURCES:
            frame = frame[SOURCES[name].columns]
        chunk = frame.iloc[(page - 1) * page_size:page * page_size]
        if not len(chunk):
            raise HTTPException(404, f"no page {page}: {name} has "
                                f"{-(-len(frame) // page_size)} page(s) of {page_size}")
        rows = pa.Table.from_pandas(chunk, preserve_index=False).to_pylist()
        return Response(json.dumps(rows, default=_iso), media_type="application/json")

    return app


def listen(app, host: str, port: int, label: str, notes: tuple[str, ...] = ()) -> None:
    """Serve ``app`` until interrupted; port 0 takes a free one. The first line printed names
    the URL, ``notes`` follow."""
    import uvicorn

    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)         # before the URL is printed: a client that reads it and
    #                               connects at once is queued, not refused (uvicorn accepts)
    print(f"{label} on http://{host}:{listener.getsockname()[1]}", flush=True)
    for note in notes:
        print(note, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[listener])


def serve(root: str, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise ValueError(f"refusing to start without a token: set {TOKEN_ENV} (clients send "
                         f"'Authorization: Bearer <token>')")
    app = create_app(root, token)
    from minilake.layout import Layout

    listen(app, host, port, f"minilake job server: serving {Layout.of(root).root}")
