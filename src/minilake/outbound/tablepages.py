"""A table read pinned to one version, a page or a stream at a time (docs/server.md, table
reads): what the job server answers ``GET /tables/{name}`` with.

A read names the table's version when it starts (the latest, unless one is asked for), and
every later page of it reads that version, whatever is committed meanwhile. Its rows come in
the order of the version's data files (by path), and within a file in its row groups' order:
a page is found from where the one before stopped (a :class:`Cursor`: the file, the row
group, the rows of it already given), so it reads the row groups it needs, not the table. The
read is the same one ``read_table`` makes (every version, or those valid on ``as_of``, in the
table's declared types), in another row order.

A stream (``arrow``, ``parquet``, ``ndjson``) writes the whole read ``STREAM_ROWS`` rows at
a time: what is held is those rows and what the compressor keeps, whatever the table's size.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from minilake.contract.sources import SOURCES
from minilake.formats import jsontext
from minilake.lake import delta
from minilake.lake.layout import Layout
from minilake.load import history

FORMATS = {"arrow": "application/vnd.apache.arrow.stream",
           "parquet": "application/vnd.apache.parquet", "ndjson": "application/x-ndjson"}
ENCODINGS = ("zstd", "gzip")            # what a stream is compressed with, in this preference
CACHED_GROUPS = 2                       # row groups kept between pages (the next page's)
STREAM_ROWS = 65_536                    # rows a stream writes at a time


class BadCursor(ValueError):
    """A cursor this server did not give, or given for another table (one line)."""


@dataclass(frozen=True)
class Read:
    """What is read: ``table`` at ``version``; with ``as_of`` the versions valid that day;
    with ``delivery`` only a source's own columns (``?date=``: a delivery of that day)."""

    table: str
    version: int
    as_of: str | None = None
    delivery: bool = False


@dataclass(frozen=True)
class Cursor:
    """Where a read's next page starts: its data file (by path order), that file's row
    group, and how many of that group's rows were given already; ``size`` rows a page."""

    read: Read
    size: int
    file: int = 0
    group: int = 0
    row: int = 0

    def token(self) -> str:
        """The cursor as the text a client sends back (``?cursor=``): not a secret, only a
        place; a token changed by hand is refused or reads another place of the same
        version."""
        text = json.dumps({**asdict(self), "read": asdict(self.read)}, separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str, table: str, max_size: int) -> Cursor:
        try:
            fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            read = Read(**fields.pop("read"))
            cursor = cls(read=read, **fields)
            numbers = (read.version, cursor.size, cursor.file, cursor.group, cursor.row)
            if not all(type(n) is int and 0 <= n < 1 << 62 for n in numbers) or not 0 < \
                    cursor.size <= max_size or type(read.delivery) is not bool or (
                        read.delivery and read.table not in SOURCES):
                raise ValueError
            if read.as_of is not None:
                dt.date.fromisoformat(read.as_of)
        except (ValueError, TypeError, AttributeError, KeyError, binascii.Error,
                UnicodeDecodeError):
            raise BadCursor(f"cursor: not a cursor this server gave for {table} (start again "
                            f"without one)") from None
        if read.table != table:
            raise BadCursor(f"cursor: given for {read.table}, not {table}")
        return cursor


def pinned(layout: Layout, table: str, as_of: dt.date | None = None,
           version: int | None = None, delivery: bool = False) -> Read:
    """A read of ``table`` at ``version`` (one still kept), else at its latest version."""
    path = history.table_path(layout, table)
    if version is None:
        version = delta.delta(path).version()
    else:
        history.check_version_kept(layout, table, path, version)
    read = Read(table, version, as_of.isoformat() if as_of else None,
                delivery and table in SOURCES)
    _dated(layout, read)
    return read


def _dated(layout: Layout, read: Read) -> None:
    """A read by date of a table without versions by date is a one-line ``ValueError``."""
    whole = replace(read, delivery=False)           # a delivery's columns leave them out
    if read.as_of is not None and "effective_from" not in _schema(layout.root, whole).names:
        raise ValueError(f"{read.table} has no versions by date (effective_from, "
                         f"expiry_date): read it without as_of or date")


def page(layout: Layout, cursor: Cursor) -> tuple[pa.Table, Cursor | None]:
    """The rows of the page at ``cursor``, and the cursor of the next page (None after the
    last: the next cursor always has rows to give). A version no longer kept (an erasure, the
    history policy) is a one-line ``ValueError`` saying why."""
    from deltalake.exceptions import DeltaError  # on first use: start-up stays light

    read = cursor.read
    path = layout.table(read.table)
    # the version's commit still there (one stat): else, before any cached row is given, why
    # not (an erasure purges the versions before it: their rows must not be served)
    if not delta.committed(path, read.version):
        history.check_version_kept(layout, read.table, path, read.version)
    try:
        _dated(layout, read)
        return _page(layout, cursor)
    except DeltaError:
        history.check_version_kept(layout, read.table, path, read.version)
        raise


def _page(layout: Layout, cursor: Cursor) -> tuple[pa.Table, Cursor | None]:
    taken: list[pa.Table] = []
    left, at = cursor.size, _onward(layout, cursor)
    while left and at is not None:
        rows = _group(layout.root, at.read, at.file, at.group).slice(at.row, left)
        taken.append(rows)
        left -= rows.num_rows
        at = replace(at, row=at.row + rows.num_rows)
        at = _onward(layout, at)
    schema = _schema(layout.root, cursor.read)
    return pa.concat_tables(taken) if taken else schema.empty_table(), at


def batches(layout: Layout, read: Read) -> Iterator[pa.Table]:
    """Every row of the read in page order, ``STREAM_ROWS`` rows at a time at most, each
    file read as it streams (not a row group at once: a 100x day of sales is one row group
    of 60 MB in Arrow; nothing is kept). A file's partition values, and the columns it was
    written without, are filled in as the dataset fills them."""
    stored, files = _dataset(layout.root, read)
    schema = _schema(layout.root, read)
    where = history.valid_on(read.as_of) if read.as_of else None
    for fragment in files:
        given = ds.get_partition_keys(fragment.partition_expression)
        with fragment.filesystem.open_input_file(fragment.path) as source:
            opened = pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20)
            for batch in opened.iter_batches(batch_size=STREAM_ROWS, use_threads=False):
                rows = pa.Table.from_batches([batch])
                for field in stored:
                    if field.name not in rows.column_names:
                        rows = rows.append_column(field.name, pa.repeat(
                            pa.scalar(given.get(field.name), field.type), rows.num_rows))
                if where is not None:
                    rows = rows.filter(where)
                if rows.num_rows:
                    yield rows.select(schema.names).cast(schema)


def stream(layout: Layout, read: Read, form: str, encoding: str | None) -> Iterator[bytes]:
    """The read written as ``form`` (:data:`FORMATS`), compressed with ``encoding`` (one of
    :data:`ENCODINGS`, or None), as pieces of bytes as each batch of rows is written."""
    out = _Pieces()
    sink = pa.PythonFile(out, mode="w")
    target = pa.CompressedOutputStream(sink, encoding) if encoding else sink
    schema = _schema(layout.root, read)
    writer = (pa.ipc.new_stream(target, schema) if form == "arrow" else
              pq.ParquetWriter(target, schema) if form == "parquet" else None)
    for rows in batches(layout, read):
        if writer is None:
            target.write(jsontext.lines(rows).encode())
        else:
            writer.write_table(rows)
        yield out.take()
    if writer is not None:
        writer.close()
    if encoding:
        target.close()
    yield out.take()


class _Pieces:
    """A write-only file whose bytes are taken as they come."""

    def __init__(self):
        self.pieces: list[bytes] = []
        self.closed = False

    def write(self, data) -> int:
        self.pieces.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        taken, self.pieces = b"".join(self.pieces), []
        return taken

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _onward(layout: Layout, at: Cursor) -> Cursor | None:
    """``at``, or if its row group is spent the start of the next group with rows; None at
    the end of the read."""
    files = _files(layout.root, at.read)
    while at.file < len(files):
        if at.group < files[at.file].num_row_groups:
            if at.row < _group(layout.root, at.read, at.file, at.group).num_rows:
                return at
            at = replace(at, group=at.group + 1, row=0)
        else:
            at = replace(at, file=at.file + 1, group=0, row=0)
    return None


def _files(root, read: Read) -> list:
    """The version's data files that may hold rows of the read (those a date's rows cannot
    be in are left out by the log's statistics), in path order."""
    return _dataset(root, read)[1]


@functools.lru_cache(maxsize=16)
def _dataset(root, read: Read) -> tuple[pa.Schema, list]:
    """The version's dataset schema (with its partition columns) and its files."""
    path = Layout.of(root).table(read.table)
    where = ([("effective_from", "<=", dt.date.fromisoformat(read.as_of)),
              ("expiry_date", ">", dt.date.fromisoformat(read.as_of))] if read.as_of else None)
    found = delta.dataset(path, read.version, where=where)
    return found.schema, sorted(found.get_fragments(), key=lambda f: f.path)


@functools.lru_cache(maxsize=16)
def _schema(root, read: Read) -> pa.Schema:
    """The read's columns and types: ``read_table``'s."""
    stored = pa.schema(delta.delta(Layout.of(root).table(read.table), read.version)
                       .schema().to_arrow())
    schema = history.typed_schema(read.table, stored) or stored
    if read.delivery:
        schema = pa.schema([schema.field(c) for c in SOURCES[read.table].columns])
    return schema


@functools.lru_cache(maxsize=CACHED_GROUPS)
def _group(root, read: Read, file: int, group: int) -> pa.Table:
    """One row group's rows of the read, kept for the next page (which most often goes on
    in the same group)."""
    return _rows(root, read, file, group)


def _rows(root, read: Read, file: int, group: int) -> pa.Table:
    stored, files = _dataset(root, read)
    rows = files[file].subset(row_group_ids=[group]).to_table(
        schema=stored, filter=history.valid_on(read.as_of) if read.as_of else None)
    schema = _schema(root, read)
    return rows.select(schema.names).cast(schema)
