"""A table written out for the systems downstream: Avro, Parquet or CSV (docs/formats.md).

The rows are those of ``read_table`` (every version, those valid on a date, the current ones,
or the table as of a Delta version) and are streamed: the table's files are scanned in record
batches, each written and let go, so memory is bounded by a batch, not by the table. Avro goes
through fastavro (deflate, a schema derived from the table's own Arrow schema: ``long``,
``double``, ``string``, ``boolean``, ``int``/``date``, ``["null", T]`` where a column may be
empty); Parquet and CSV through pyarrow. The file appears under its name only when complete.

The format is the output file's extension (``.avro``, ``.parquet``, ``.csv``) unless given; a
format given that the extension contradicts, or an extension that names no format when none is
given, is refused before anything is read or written: a file named ``x.parquet`` holding Avro
would be read wrongly by every tool downstream. Without an output file the default is Avro.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from tqdm import tqdm

from minilake.contract.sources import SOURCES
from minilake.crashpoints import crashpoint
from minilake.lake import delta, storage
from minilake.lake.layout import Layout
from minilake.lake.lock import hold
from minilake.load import datafiles, history

FORMATS = ("avro", "parquet", "csv")
DEFAULT_FORMAT = "avro"
BATCH_ROWS = 64 * 1024


@dataclass
class ExportResult:
    table: str
    path: Path
    format: str
    rows: int
    bytes: int

    def line(self) -> str:
        return f"export: {self.table}: {self.rows} row(s) written to {self.path} ({self.format})"


def avro_type(field: pa.Field) -> object:
    """The Avro type of an Arrow column (docs/formats.md)."""
    kind = field.type
    if pa.types.is_int64(kind):
        avro: object = "long"
    elif pa.types.is_int32(kind) or pa.types.is_int16(kind) or pa.types.is_int8(kind):
        avro = "int"
    elif pa.types.is_floating(kind):
        avro = "double"
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        avro = "string"
    elif pa.types.is_boolean(kind):
        avro = "boolean"
    elif pa.types.is_date32(kind):
        avro = {"type": "int", "logicalType": "date"}
    elif pa.types.is_timestamp(kind) and kind.unit == "us":
        avro = {"type": "long", "logicalType": "timestamp-micros"}
    else:
        raise ValueError(f"column {field.name!r}: no Avro type for Arrow {kind}")
    return ["null", avro] if field.nullable else avro


def avro_schema(name: str, schema: pa.Schema) -> dict:
    """Record ``minilake.<name>`` with one field per column."""
    return {"type": "record", "name": name, "namespace": "minilake",
            "fields": [{"name": f.name, "type": avro_type(f)} for f in schema]}


def _schema(name: str, data: ds.Dataset) -> pa.Schema:
    """The table's columns as ``read_table`` gives them: a source's declared types and
    nullability (the files' own schema says every column may be null)."""
    if name in SOURCES:         # and the columns a contract added (docs/contracts.md)
        source = datafiles.of_table(data.schema, SOURCES[name])     # and those it widened
        return datafiles.table_schema(source, datafiles.added_of(source, data.schema.names))
    return data.schema


def _filter(as_of: dt.date | str | None, current: bool) -> pc.Expression | None:
    if as_of is not None:
        return history.valid_on(as_of)
    if current:
        return pc.field("is_current") == True  # noqa: E712  (an Arrow expression)
    return None


def _default_out(layout: Layout, table: str, fmt: str, as_of, version, current) -> Path:
    tag = (f"_as_of_{history.as_date(as_of).isoformat()}" if as_of is not None
           else "_current" if current else "")
    tag += f"_v{version}" if version is not None else ""
    return layout.exports / f"{table}{tag}.{fmt}"


def export_format(format: str | None, out: str | Path | None) -> str:
    """The format to write: ``format`` if given (refused if ``out``'s extension names
    another), else the one ``out``'s extension names, else Avro when there is no ``out``."""
    if format is not None and format not in FORMATS:
        raise ValueError(f"no export format {format!r}; formats: {', '.join(FORMATS)}")
    if out is None:
        return format or DEFAULT_FORMAT
    extension = PurePosixPath(str(out)).suffix.lower().removeprefix(".")
    named = extension if extension in FORMATS else None
    if format is not None and named is not None and format != named:
        raise ValueError(f"format {format!r} does not match the output file {out} "
                         f"(a .{named} name): give format {named!r}, or name a .{format} file")
    if format is None and named is None:
        raise ValueError(f"no export format for the output file {out}: its extension is "
                         f"{'.' + extension if extension else 'missing'}; name a .avro, "
                         f".parquet or .csv file, or give the format")
    return format or named


def export(table: str, out: str | Path | None = None, *, format: str | None = None,
           as_of: dt.date | str | None = None, version: int | None = None,
           current: bool = False, root: str | Path = ".", batch_rows: int = BATCH_ROWS,
           progress: bool | None = None) -> ExportResult:
    """Write ``table`` (all versions; ``as_of`` a date: those valid then; ``current``: the
    current ones; ``version``: the table as of that Delta version) to ``out`` (default
    ``ROOT/exports/<table>[_as_of_D|_current][_vN].<format>``), as ``format`` (default: what
    ``out``'s extension names; Avro without ``out``)."""
    format = export_format(format, out)
    if as_of is not None and current:
        raise ValueError("--as-of and --current exclude each other (as of a date, or now)")
    layout = Layout.of(root)
    # holding the root: no erasure (docs/guarantees.md) can rewrite the table, nor the exports it
    # scrubs,
    # while this export reads the one and writes the other
    with hold(layout.root, "export"):
        return _export(layout, table, out, format, as_of, version, current, batch_rows,
                       progress)


def _export(layout: Layout, table: str, out: str | Path | None, format: str,
            as_of: dt.date | str | None, version: int | None, current: bool,
            batch_rows: int, progress: bool | None) -> ExportResult:
    path = history.table_path(layout, table)
    if version is not None:
        history.check_version_kept(layout, table, path, version)
    data = delta.dataset(path, version)
    schema = _schema(table, data)
    where = _filter(as_of, current)
    target = storage.as_path(out) if out is not None else _default_out(
        layout, table, format, as_of, version, current)
    total = data.count_rows(filter=where)
    bar = tqdm(total=total, desc=f"export {table}", unit="row", unit_scale=True,
               disable=None if progress is None else not progress)

    def batches() -> Iterator[pa.RecordBatch]:
        # One file and one batch ahead at most, and a row group decoded page by page rather
        # than fetched whole: memory is then a batch's, however large the table's files.
        scanner = data.scanner(
            columns=schema.names, filter=where, batch_size=batch_rows, batch_readahead=1,
            fragment_readahead=1,
            fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False))
        for batch in scanner.to_batches():
            if batch.num_rows:
                yield batch.cast(schema)
                bar.update(batch.num_rows)

    try:
        with storage.publish(target) as handle:
            rows = WRITERS[format](table, schema, batches(), handle)
            crashpoint("export.before_publish")
    finally:
        bar.close()
    return ExportResult(table, target, format, rows, storage.stat(target)[0])


def _avro(table: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
          handle: IO[bytes]) -> int:
    import fastavro  # on first use: start-up stays light

    parsed = fastavro.parse_schema(avro_schema(table, schema))
    # Dates go to fastavro as days since 1970 (what Avro stores), not as datetime.date
    # objects: one integer per value instead of a Python date built and taken apart again.
    days = [i for i, f in enumerate(schema) if pa.types.is_date32(f.type)]
    count = 0

    def records() -> Iterator[dict]:
        nonlocal count
        for batch in batches:
            columns = batch.columns
            for i in days:
                columns[i] = columns[i].cast(pa.int32())
            plain = pa.RecordBatch.from_arrays(columns, names=schema.names)
            count += plain.num_rows
            yield from plain.to_pylist()

    fastavro.writer(handle, parsed, records(), codec="deflate")
    return count


def _parquet(table: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
             handle: IO[bytes]) -> int:
    count = 0
    with pq.ParquetWriter(handle, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            count += batch.num_rows
    return count


def _csv(table: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
         handle: IO[bytes]) -> int:
    count = 0
    with pacsv.CSVWriter(handle, schema,
                         write_options=pacsv.WriteOptions(quoting_style="all_valid")) as writer:
        for batch in batches:
            writer.write_batch(batch)
            count += batch.num_rows
    return count


WRITERS = {"avro": _avro, "parquet": _parquet, "csv": _csv}
