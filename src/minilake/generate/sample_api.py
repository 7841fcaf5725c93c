"""A sample API for the sample world: its deliveries served in the protocol of docs/formats.md.

``python -m minilake serve-sample-api --root DIR [--port N]`` answers
``GET /{source}?date=YYYY-MM-DD&page=N`` with page N of that day's records, a JSON array, and a
404 after the last page, so that ``minilake pull`` can be tried end to end on this machine. The
records are the day's file of the source under DIR (``landing_zone/``, ``archive/<source>/`` or
``samples/*/``), read with minilake's own reader: a value of a number column that is a JSON
number is sent as that number, written exactly as in the file (``12.50`` stays ``12.50``),
anything else as a string, an empty value as null. Identifiers such as ``sale_id`` are text and
keep their leading zeros.

With ``MINILAKE_API_TOKEN`` set where the server starts, a request must carry that token in its
``Authorization`` header (compared in constant time) or gets a 401.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Query
from fastapi.responses import Response

from minilake.contract.sources import SOURCES, Source
from minilake.formats.readers import UnreadableFile
from minilake.inbound.pull import TOKEN_ENV
from minilake.lake.layout import Layout
from minilake.web import listen

JSON_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
PAGE_SIZE = 1000


def _day_file(layout: Layout, source: Source, day: dt.date) -> Path | None:
    """The source's file of that date under the root, in the source's usual form first."""
    folders = [layout.landing, layout.archive(source.name),
               *sorted(p for p in (layout.root / "samples").glob("*") if p.is_dir())]
    for form in source.forms:
        name = source.file_name(day, form)
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
    return None


def _value(text: str, number: bool) -> str:
    if text == "":
        return "null"
    if number and JSON_NUMBER.fullmatch(text):
        return text
    return json.dumps(text)


def records(source: Source, path: Path) -> list[str]:
    """Each row of a delivered file as the text of one JSON object."""
    frame = source.read(path).rows
    numeric = {name: column.metadata["kind"] in ("int", "float")
               for name, column in source.schema.columns.items()}
    columns = [(name, json.dumps(name), numeric[name]) for name in source.columns]
    values = [frame[name].tolist() for name, _, _ in columns]
    return ["{" + ", ".join(f"{key}: {_value(row[i], number)}"
                            for i, (_, key, number) in enumerate(columns)) + "}"
            for row in zip(*values, strict=True)]


def create_app(root: str | Path, *, page_size: int = PAGE_SIZE,
               token: str | None = None) -> FastAPI:
    """The sample API over the deliveries under ``root``; ``token`` (if any) is required."""
    layout = Layout.of(root)
    app = FastAPI(title="minilake sample API",
                  description="The sample world's deliveries, page by page (docs/formats.md).")

    @lru_cache(maxsize=8)
    def day_records(source: str, day: dt.date) -> list[str] | None:
        path = _day_file(layout, SOURCES[source], day)
        return None if path is None else records(SOURCES[source], path)

    @app.get("/{source}")
    def page_of(source: str, date: dt.date,
                page: Annotated[int, Query(ge=1)] = 1,
                authorization: Annotated[str | None, Header()] = None) -> Response:
        if token and not hmac.compare_digest((authorization or "").encode(), token.encode()):
            raise HTTPException(401, "missing or wrong token in the Authorization header")
        if source not in SOURCES:
            raise HTTPException(404, f"no source {source!r}; sources: {', '.join(SOURCES)}")
        try:
            rows = day_records(source, date)
        except UnreadableFile as error:
            raise HTTPException(500, f"the {source} file of {date} cannot be read: "
                                f"{error}") from None
        if rows is None:
            raise HTTPException(404, f"no {source} delivery for {date}")
        chunk = rows[(page - 1) * page_size:page * page_size]
        if not chunk:
            raise HTTPException(404, f"no page {page}: {source} of {date} has "
                                f"{-(-len(rows) // page_size)} page(s)")
        return Response("[\n" + ",\n".join(chunk) + "\n]\n", media_type="application/json")

    return app


def serve(root: str | Path, *, host: str = "127.0.0.1", port: int = 0,
          page_size: int = PAGE_SIZE) -> None:
    """Serve the sample API until interrupted; port 0 takes a free port. The first line
    printed is the URL to pull from."""

    token = os.environ.get(TOKEN_ENV) or None
    app = create_app(root, page_size=page_size, token=token)
    notes = () if token else (f"sample API: {TOKEN_ENV} is not set here, so any token is "
                              f"accepted",)
    listen(app, host, port, f"sample API: serving {Layout.of(root).root}", notes)
