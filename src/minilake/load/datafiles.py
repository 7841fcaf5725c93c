"""The SCD2 tables' data files and commits (docs/architecture.md): what one delivery's changes
become on disk.

Each table is partitioned by ``is_current``: the current versions sit together, so the keys and
hashes a file is compared with are read without touching history, and expiring a version
rewrites only current files. Applying a file is one commit (new files for the new versions,
rewritten current files where versions expire, or the table's first write), and that commit
carries the file's name, sha256 and counts in its commit metadata: a run that died after the
commit and before the ingest log finds the file in the table's history and does not apply it
twice.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import CommitProperties
from deltalake import Schema as DeltaSchema
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from minilake.contract.schemas import WIDER
from minilake.contract.sources import Source
from minilake.crashpoints import crashpoint
from minilake.lake import delta, storage
from minilake.lake.delta import (
    COMMIT_KEY,
    KEEP_LOG,
    Opened,
    after_commit,
    dataset,
    exists,
    fenced,
    made,
    named,
    refused,
    write,
)
from minilake.load.keys import found, positions
from minilake.load.scd2 import OPEN_END, SCD2_COLUMNS, Changes
from minilake.load.validate import ARROW_TYPES, arrow_schema


def table_schema(source: Source, added: list[str] = ()) -> pa.Schema:
    """A source table's columns: the declared ones, the SCD2 ones, then those a contract
    added (docs/contracts.md: text, in the order the table gained them)."""
    business = arrow_schema(source.schema)
    return pa.schema([*business, pa.field("effective_from", pa.date32(), nullable=False),
                      pa.field("expiry_date", pa.date32(), nullable=False),
                      pa.field("is_current", pa.bool_(), nullable=False),
                      pa.field("row_hash", pa.int64(), nullable=False),
                      *(pa.field(name, pa.string()) for name in added)])


def added_of(source: Source, names: list[str]) -> list[str]:
    """Of a table's column names, those a contract added (docs/contracts.md), in order."""
    base = set(table_schema(source).names)
    return [name for name in names if name not in base]


def widened_of(table: Opened | Staged | pa.Schema, source: Source) -> dict[str, str]:
    """The declared columns the table (or a table's ``pa.Schema``) holds wider than declared
    (docs/contracts.md), each with its kind: none before its first commit."""
    if isinstance(table, Staged):
        return dict(table.widened)
    if not isinstance(table, pa.Schema):
        opened = table.table()
        if opened is None:
            return {}
        table = pa.schema(opened.schema().to_arrow())
    out = {}
    for name, column in source.schema.columns.items():
        wider = WIDER.get(column.metadata["kind"])
        if wider and name in table.names and table.field(name).type == ARROW_TYPES[wider]:
            out[name] = wider
    return out


def of_table(table: Opened | Staged | pa.Schema, source: Source) -> Source:
    """``source`` with the columns the table widened of their wider kind (what types and
    stores its rows)."""
    return source.widened(widened_of(table, source))


def added_columns(table: Opened | Staged, source: Source) -> list[str]:
    """The columns a contract added to the table (as a repair has staged it): none before
    its first commit."""
    if isinstance(table, Staged):
        return list(table.added)
    opened = table.table()
    return [] if opened is None else added_of(source, opened.schema().to_arrow().names)


def conformed(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` in ``schema``'s columns, a column they lack (one added to the table after
    they were written) empty."""
    for field in schema:
        if field.name not in rows.column_names:
            rows = rows.append_column(field, pa.nulls(rows.num_rows, field.type))
    return rows.select(schema.names).cast(schema)


def partitioning(source: Source) -> list[str]:
    return ["is_current", *source.partition_by]


def current_files(opened: Opened | Staged, source: Source) -> list[dict]:
    """The table's current data files (its add actions in the ``is_current`` partition, with
    their key statistics), at the handle's version, or as a repair has staged them; none
    before the first commit."""
    if isinstance(opened, Staged):
        return opened.current()
    table = opened.table()
    if table is None:
        return []
    files = pa.table(table.get_add_actions(flatten=True))
    # what a file's work reads of them (parts.work, write_changes): path, size, partition
    # values, least and greatest key. Every column of the add actions as Python values took
    # 9 ms a run for the 1,100 current files of three years of sales; these, 1.5 ms.
    wanted = {"path", "size_bytes", f"min.{source.key}", f"max.{source.key}"}
    files = files.filter(files["partition.is_current"])
    return files.select([n for n in files.column_names
                         if n in wanted or n.startswith("partition.")]).to_pylist()


def current_versions(path: Path, source: Source, files: list[dict],
                     keys: pa.Array | None = None) -> pa.Table:
    """Key and row_hash of the current versions held in ``files`` (nothing else is read).

    With ``keys``, only the versions of those keys are read: enough for a transactional
    file, which says nothing about other keys. Keys outside every file's key statistics
    (a day's new sales) are left out first, so what is looked up is the few that may exist
    (the day's corrections); files and row groups outside their range are skipped by their
    statistics, and only the matching rows are kept (at 1000x, a day's file once held every
    current sale between its oldest correction and its newest sale: a gigabyte)."""
    key_type = table_schema(source).field(source.key).type
    schema = pa.schema([pa.field(source.key, key_type), pa.field("row_hash", pa.int64())])
    where = None
    if keys is not None:
        bounds = _key_bounds(files, source)
        keys = _within_statistics(bounds, keys)
        if len(keys) == 0:
            return schema.empty_table()
        files = _overlapping(files, bounds, keys)
        low, high = (v.cast(key_type) for v in pc.min_max(keys).values())
        where = ((pc.field(source.key) >= low) & (pc.field(source.key) <= high)
                 & pc.field(source.key).isin(pc.unique(keys).cast(key_type)))
    if not files:
        return schema.empty_table()
    filesystem, base = storage.arrow(path)
    data = ds.dataset([f"{base}/{f['path']}" for f in files], format="parquet",
                      filesystem=filesystem)
    return data.to_table(columns=schema.names, filter=where).cast(schema)


def current_rows(path: Path, source: Source, files: list[dict], keys: pa.Array,
                 added: list[str] = ()) -> pa.Table:
    """The current versions of ``keys`` held in ``files``, whole: business columns, then
    ``effective_from``. For an in-place update (docs/contracts.md), which compares them with
    a file's rows; read only when the contract has columns updated in place and a file
    changes keys."""
    schema = table_schema(source, added)
    wanted = [n for n in schema.names if n not in SCD2_COLUMNS] + ["effective_from"]
    held = pc.field(source.key).isin(keys.cast(schema.field(source.key).type))
    pieces = [_rows_of(path, source, f, schema, held).select(wanted)
              for f in overlapping(files, source, keys)]
    return pa.concat_tables(pieces) if pieces else \
        pa.schema([schema.field(n) for n in wanted]).empty_table()


def row_counts(path: Path) -> tuple[int, int]:
    """(current versions, all versions) of a table; (0, 0) before its first file."""
    if not exists(path):
        return 0, 0
    data = dataset(path)
    return (data.count_rows(filter=pc.field("is_current") == pa.scalar(True)),
            data.count_rows())


def applied_commits(opened: Opened, logged: int | None) -> dict[tuple[str, str], dict]:
    """The files the table's history says were applied after version ``logged`` (the latest
    the ingest log names; None: the whole history): (file, sha256) -> that file's counts and
    the table version. A rebuild's commit names every file it replayed.

    A run logs the files it applied in order once, when they are done (docs/guarantees.md):
    a run that stopped before that left its commits since the last logged one unlogged."""
    table = opened.table()
    if table is None:
        return {}
    version = table.version()
    unlogged = version + 1 if logged is None or logged > version else version - logged
    out = {}
    for entry in reversed(table.history(limit=unlogged) if unlogged else []):
        if COMMIT_KEY in entry:
            meta = json.loads(entry[COMMIT_KEY])
            for applied in meta.get("files", [meta] if "file" in meta else []):
                out[applied["file"], applied["sha256"]] = {**applied,
                                                           "table_version": entry["version"]}
    return out


def _open_versions(table: pa.Table, day: dt.date, changes: Changes | None = None,
                   key: str | None = None) -> pa.Table:
    """New versions: valid from ``day`` until further notice; a version rewritten in place
    (``changes.replaced``, by ``key``) from the day its current one began."""
    n = table.num_rows
    begins = pa.repeat(pa.scalar(day, pa.date32()), n)
    if changes is not None and changes.in_place:
        at = positions(table.column(key).combine_chunks(),
                       changes.replaced.cast(table.column(key).type))
        kept = changes.replaced_from.cast(pa.date32()).take(pa.array(np.maximum(at, 0)))
        begins = pc.if_else(pa.array(at >= 0), kept, begins)
    table = table.append_column("effective_from", begins)
    table = table.append_column("expiry_date", pa.repeat(pa.scalar(OPEN_END, pa.date32()), n))
    return table.append_column("is_current", pa.repeat(pa.scalar(True), n))


def write_changes(path: Path, source: Source, changes: Changes, day: dt.date,
                  files: list[dict], *, ordered: bool = False) -> list:
    """Write one file's changes (or one key range's) as data files; return the Delta actions
    that make them the table's: nothing is committed here.

    New versions are written as new files. A current file (of ``files``) holding a version
    that expires is rewritten: its other rows into a new current file, the expiring ones,
    closed on ``day``, into the history partition; rows bound for the same partition share
    files of up to ``ROWS_PER_FILE`` rows. Only current files whose key statistics overlap the
    expiring keys are read at all. With ``ordered``, rows are written in key order, so that
    the files of a key range do not overlap each other's key statistics (what lets the Dask
    engine cut a table into ranges again, README.md, the Dask engine)."""
    schema = table_schema(source, added_of(source, changes.inserts.column_names))
    rows = _open_versions(changes.inserts, day, changes, source.key).select(
        schema.names).cast(schema)
    writer = _Files(path, source, schema, ordered)
    tombstones = (changes.gone if source.contract.vanished == "tombstone"
                  and changes.gone is not None and len(changes.gone) else None)
    replaced = changes.replaced if changes.in_place else None
    ending = changes.expire_keys if replaced is None else pa.concat_arrays(
        [changes.expire_keys, replaced.cast(changes.expire_keys.type)])
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        rewritten = [] if len(ending) == 0 else list(pool.map(
            lambda f: writer.expire(f, changes.expire_keys, day, tombstones, replaced),
            overlapping(files, source, ending)))
        pieces = [p for _, small in rewritten for p in small] + writer.by_partition(rows)
        added = list(pool.map(lambda p: writer.write(*p), writer.pack(pieces)))
    return [a for done, _ in rewritten for a in done] + added


def commit(opened: Opened, source: Source, actions: list, provenance: dict,
           columns: list[str] | None = None, overwrite: bool = False) -> int:
    """One commit of a file's actions, carrying its provenance; the table's first commit
    creates it. ``columns``: the columns a contract added the files hold (the table's
    before, and any new, docs/contracts.md), the new ones added to the table first.
    ``overwrite``: the actions add every file the table is to hold, and the schema changes
    with them (a repair that widened a column, :meth:`Staged.widen`). Returns the new
    version."""
    added = added_columns(opened, source)      # never fewer than the table has
    added += [c for c in columns or () if c not in added]
    source = of_table(opened, source)
    schema = table_schema(source, added)
    doing = f"committing {source.name}/{provenance['file']}" if "file" in provenance else \
        f"committing to {named(opened.path)}"
    if opened.table() is not None:
        add_columns(opened, source, added, provenance)
    table = opened.table()
    properties = fenced(opened.path, table, doing, {COMMIT_KEY: json.dumps(provenance)})
    crashpoint("commit.fenced")
    with refused(opened.path, doing):
        if table is None:
            storage.mkdirs(opened.path)
            with made(opened.path):
                create_table_with_add_actions(
                    storage.uri(opened.path), DeltaSchema.from_arrow(schema), actions,
                    mode="error", partition_by=partitioning(source),
                    configuration=delta.created(opened.path),   # the root's policy
                    storage_options=storage.delta_options(opened.path),
                    commit_properties=properties, post_commithook_properties=KEEP_LOG)
        else:
            table.create_write_transaction(
                [a for a in actions if not isinstance(a, RemoveAction)] if overwrite
                else actions, mode="overwrite" if overwrite else "append", schema=schema,
                partition_by=partitioning(source), commit_properties=properties,
                post_commithook_properties=KEEP_LOG)
    return after_commit(opened)


WIDENED_KEY = "minilake.columns_widened"    # commit metadata of a widening (docs/contracts.md)


class Unwidenable(ValueError):
    """A column the table cannot widen: it holds a value the wider type would change."""


def widen(opened: Opened, wide: Source, new: dict[str, str], provenance: dict) -> None:
    """The table's columns ``new`` widened (docs/contracts.md; ``wide``: the source as the
    table is to hold it), in one commit of their own naming the file that needs them: every
    data file rewritten (:func:`_rewritten`), the schema changed with them (delta-rs changes
    a column's type only by an overwrite). A run that stops after it finds them wide; the
    file's commit follows. Cost: the whole table, once a column."""
    table = opened.table()
    added = added_columns(opened, wide)
    adds = _rewritten(opened.path, wide, added,
                      pa.table(table.get_add_actions(flatten=True)).to_pylist())
    crashpoint("commit.widening")
    doing = f"widening {', '.join(new)} of {wide.name} for {provenance.get('file', '')}"
    properties = fenced(opened.path, table, doing, {WIDENED_KEY: json.dumps(
        {"columns": new, **{k: provenance[k] for k in ("file", "sha256") if k in provenance}})})
    with refused(opened.path, doing):
        table.create_write_transaction(adds, mode="overwrite", schema=table_schema(wide, added),
                                       partition_by=partitioning(wide),
                                       commit_properties=properties,
                                       post_commithook_properties=KEEP_LOG)
    after_commit(opened)
    crashpoint("commit.widened")


def _rewritten(path: Path, wide: Source, added: list[str], files: list[dict]) -> list:
    """Each of ``files`` written again, the same rows (data unchanged), in the table's
    columns as ``wide`` types them: what a widening adds back."""
    schema = table_schema(wide, added)
    writer = _Files(path, wide, schema, data_change=False)
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return list(pool.map(lambda f: writer.write(_rows_of(path, wide, f, schema),
                                                    _partition_values(f)), files))


WIDENED = "column {!r} widened from {} to {} ({})"     # schema log, why by the wider kind
WHY = {"timestamp": "values with a time of day", "float": "numbers that are not integers"}


def widen_for(table: Opened | Staged, source: Source, needs: dict[str, str], file: str,
              sha256: str) -> tuple[dict[str, str], list[str]]:
    """The table's columns widened as far as the file ``needs`` (docs/contracts.md: a commit
    of its own before the file's, or staged in a repair); the table's widened columns then
    (``source.widened`` of them types and stores the file's rows), and the file's schema log
    lines: the columns it widened (a run stopped after the widening finds them in the
    table's history; a table the file creates is created wide, and the file said to widen
    it)."""
    have = widened_of(table, source)
    new = {c: k for c, k in needs.items() if have.get(c) != k}
    try:
        if isinstance(table, Staged):
            if new:
                table.widen(source.widened(have | new), new)
        elif new:
            if table.table() is not None:   # else the file's commit creates the table wide
                widen(table, source.widened(have | new), new,
                      {"file": file, "sha256": sha256})
    except pa.ArrowInvalid as error:    # an integer a float64 would round (2^53 and more)
        raise Unwidenable(f"cannot widen {', '.join(map(repr, new))} of {source.name}: "
                          f"the table holds a value the wider type cannot hold exactly "
                          f"({error})") from None
    if needs and not new and not isinstance(table, Staged):
        new = {c: k for c, k in widened_for(table, file, sha256).items() if c in needs}
    return have | new, [WIDENED.format(c, source.schema.columns[c].metadata["kind"], k, WHY[k])
                        for c, k in sorted(new.items())]


def widened_for(opened: Opened, file: str, sha256: str) -> dict[str, str]:
    """The columns a recent commit widened for this delivery (a run stopped between the
    widening and the file's commit)."""
    table = opened.table()
    if table is None:
        return {}
    out = {}
    for entry in table.history(limit=RECENT_COMMITS):
        if WIDENED_KEY in entry:
            meta = json.loads(entry[WIDENED_KEY])
            if (meta.get("file"), meta.get("sha256")) == (file, sha256):
                out |= meta["columns"]
    return out


ADDED_KEY = "minilake.columns_added"        # commit metadata of a contract's new columns


def add_columns(opened: Opened, source: Source, columns: list[str], provenance: dict) -> None:
    """Of ``columns``, those the table lacks added to it (docs/contracts.md: nullable text),
    in one data-unchanged commit naming the file that brought them: a run that stops after
    it finds them there, and its file's commit carries them."""
    from deltalake import Field  # on first use: start-up stays light

    table = opened.table()
    new = [c for c in columns if c not in set(table.schema().to_arrow().names)]
    if not new:
        return
    doing = f"adding the column(s) {', '.join(new)} of {source.name}/" \
            f"{provenance.get('file', '')} to {named(opened.path)}"
    properties = fenced(opened.path, table, doing, {ADDED_KEY: json.dumps(
        {"columns": new, **{k: provenance[k] for k in ("file", "sha256") if k in provenance}})})
    with refused(opened.path, doing):
        table.alter.add_columns([Field(c, "string", nullable=True) for c in new],
                                commit_properties=properties,
                                post_commithook_properties=KEEP_LOG)
    after_commit(opened)
    crashpoint("commit.columns_added")


# the columns a file brought are added in the commit just before the file's own
RECENT_COMMITS = 10


def columns_added_for(opened: Opened, file: str, sha256: str) -> list[str]:
    """The columns a recent commit added to the table for this delivery (a run stopped
    between adding them and applying the file)."""
    table = opened.table()
    if table is None:
        return []
    out = []
    for entry in table.history(limit=RECENT_COMMITS):
        if ADDED_KEY in entry:
            meta = json.loads(entry[ADDED_KEY])
            if (meta.get("file"), meta.get("sha256")) == (file, sha256):
                out += meta["columns"]
    return out


def _key_bounds(files: list[dict], source: Source) -> tuple[pa.Array, pa.Array]:
    """Each file's least and greatest key, from its statistics (null where it has none)."""
    return (pa.array([f.get(f"min.{source.key}") for f in files]),
            pa.array([f.get(f"max.{source.key}") for f in files]))


def _within_statistics(bounds: tuple[pa.Array, pa.Array], keys: pa.Array) -> pa.Array:
    """The ``keys`` between the least and the greatest key of the files' statistics
    (``_key_bounds``; all of them if a file has none)."""
    smallest, largest = bounds
    if smallest.null_count or largest.null_count or pa.types.is_null(smallest.type):
        return keys
    low, high = pc.min(smallest), pc.max(largest)
    return keys.filter(pc.and_(pc.greater_equal(keys, low.cast(keys.type)),
                               pc.less_equal(keys, high.cast(keys.type))))


def overlapping(files: list[dict], source: Source, keys: pa.Array) -> list[dict]:
    """The files (add actions) that may hold one of ``keys``, by their key statistics."""
    return _overlapping(files, _key_bounds(files, source), keys)


def _overlapping(files: list[dict], bounds: tuple[pa.Array, pa.Array], keys: pa.Array
                 ) -> list[dict]:
    if not len(keys):
        return []
    smallest, largest = bounds
    if pa.types.is_null(smallest.type):             # no statistics (or no files): every file
        return files
    low, high = (v.cast(smallest.type) for v in pc.min_max(keys).values())
    overlaps = pc.and_(pc.less_equal(smallest, high), pc.greater_equal(largest, low))
    return [f for f, keep in zip(files, overlaps.fill_null(True).to_pylist(), strict=True)
            if keep]


ROWS_PER_FILE = 1_000_000

# A compacted history file (a month of closings) holds its versions in the order they began,
# in row groups of this many rows. A read as of an old date (effective_from <= D < expiry_date)
# then opens, of the files closing after D, only the row groups that began by D: the versions
# valid on D and few others. In key order, each row group held versions of every age and the
# read took whole files: at 10x after three years, a few months of closings for ~50,000 rows.
HISTORY_ROW_GROUP = 16_384


class _Files:
    """Data files of one table, written the way delta-rs writes them: Hive-style partition
    folders, partition columns kept out of the file, statistics for data skipping."""

    def __init__(self, root: Path, source: Source, schema: pa.Schema, ordered: bool = False,
                 data_change: bool = True):
        self.root, self.source, self.ordered = root, source, ordered
        self.data_change = data_change          # False: a compaction's files (same rows)
        self.filesystem, self.base = storage.arrow(root)
        self.partitions = partitioning(source)
        self.stored = pa.schema([f for f in schema if f.name not in self.partitions])
        # The key and row_hash are (nearly) all distinct: a dictionary is built, then dropped.
        # Parquet's own statistics only where readers filter (the Delta log has all of them).
        self.dictionary = [n for n in self.stored.names if n not in (source.key, "row_hash")]
        self.statistics = [source.key, "effective_from", "expiry_date"]

    def by_partition(self, rows: pa.Table) -> list[tuple[pa.Table, dict[str, str]]]:
        """New rows in pieces of one partition and at most ``ROWS_PER_FILE`` rows."""
        pieces = [(rows, {})]
        for column in self.partitions:
            split = []
            for piece, values in pieces:
                distinct = pc.unique(piece[column])
                for value in distinct:
                    part = piece if len(distinct) == 1 else piece.filter(
                        pc.equal(piece[column], value))
                    split.append((part, {**values, column: _partition_text(value.as_py())}))
            pieces = split
        return [(piece.slice(start, ROWS_PER_FILE), values) for piece, values in pieces
                for start in range(0, piece.num_rows, ROWS_PER_FILE)]

    def pack(self, pieces: list[tuple[pa.Table, dict[str, str]]]
             ) -> list[tuple[pa.Table, dict[str, str]]]:
        """Pieces of one partition put together into files of up to ``ROWS_PER_FILE`` rows,
        so that a partition rewritten every day does not gain a file every day."""
        groups: dict[tuple, list[pa.Table]] = {}
        for rows, partition in pieces:
            groups.setdefault(tuple(partition.items()), []).append(
                conformed(rows, self.stored))
        packed = []
        for partition, tables in groups.items():
            if self.ordered:            # one sorted run, cut into files: no two overlap
                # (history: in the order its versions began, see HISTORY_ROW_GROUP)
                order = ([("effective_from", "ascending"), (self.source.key, "ascending")]
                         if _history(dict(partition)) else self.source.key)
                rows = pa.concat_tables(tables).sort_by(order)
                packed += [(rows.slice(start, ROWS_PER_FILE), dict(partition))
                           for start in range(0, rows.num_rows, ROWS_PER_FILE)]
                continue
            batch: list[pa.Table] = []
            for rows in sorted(tables, key=len, reverse=True):
                if batch and sum(map(len, batch)) + len(rows) > ROWS_PER_FILE:
                    packed.append((pa.concat_tables(batch), dict(partition)))
                    batch = []
                batch.append(rows)
            packed.append((pa.concat_tables(batch), dict(partition)))
        return packed

    def write(self, rows: pa.Table, partition: dict[str, str]) -> AddAction:
        folder = "/".join(f"{k}={partition[k]}" for k in self.partitions)
        relative = f"{folder}/part-00000-{uuid.uuid4()}-c000.snappy.parquet"
        target = f"{self.base}/{relative}"
        storage.mkdirs(self.root / folder)
        rows = conformed(rows, self.stored)
        pq.write_table(rows, target, compression="snappy", use_dictionary=self.dictionary,
                       write_statistics=self.statistics, filesystem=self.filesystem,
                       row_group_size=HISTORY_ROW_GROUP if _history(partition) else None)
        info = self.filesystem.get_file_info(target)
        return AddAction(relative, info.size, partition, info.mtime_ns // 1_000_000,
                         self.data_change, _statistics(rows))

    def expire(self, file: dict, keys: pa.Array, day: dt.date,
               tombstones: pa.Array | None = None, replaced: pa.Array | None = None
               ) -> tuple[list, list]:
        """Rewrite one current file without the versions of ``keys``, which go, closed on
        ``day``, to the history partition, with a tombstone beside each of ``tombstones``'
        (docs/contracts.md: the closed version again, begun and ended on ``day``), and without
        those of ``replaced``, which go nowhere (rewritten in place: their new rows are among
        the new versions). Returns (actions, pieces): the file's removal and the files
        written, and the pieces too small for a file of their own (for :meth:`pack`).
        ([], []) if the file holds none of the keys."""
        rows = pq.read_table(f"{self.base}/{file['path']}", filesystem=self.filesystem)
        rows = conformed(rows, self.stored)
        held = rows[self.source.key].combine_chunks()
        ends = pa.array(found(held, keys.cast(held.type)))
        drops = ends if replaced is None else pc.or_(
            ends, pa.array(found(held, replaced.cast(held.type))))
        if not pc.any(drops).as_py():
            return [], []
        partition = _partition_values(file)
        actions = [_removal(file)]
        closed = rows.filter(ends)
        closed = closed.set_column(closed.schema.get_field_index("expiry_date"), "expiry_date",
                                   pa.repeat(pa.scalar(day, pa.date32()), closed.num_rows))
        if tombstones is not None:
            dead = closed.filter(pa.array(found(closed[self.source.key].combine_chunks(),
                                                tombstones.cast(held.type))))
            at = dead.schema.get_field_index("effective_from")
            dead = dead.set_column(at, dead.schema.field(at),
                                   pa.repeat(pa.scalar(day, pa.date32()), dead.num_rows))
            closed = pa.concat_tables([closed, dead])
        pieces = [(closed, {**partition, "is_current": "false"})] if closed.num_rows else []
        kept = rows.filter(pc.invert(drops))
        if kept.num_rows >= ROWS_PER_FILE // 2 and not self.ordered:
            actions.append(self.write(kept, partition))
        elif kept.num_rows:
            pieces.append((kept, partition))
        return actions, pieces


def _history(partition: dict[str, str]) -> bool:
    return partition.get("is_current") == "false"


def _partition_text(value: object) -> str:
    """A partition value as the Delta log writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _statistics(rows: pa.Table) -> str:
    """A data file's statistics for the Delta log: row count, and per column nulls, least
    and greatest value (what lets a reader skip the file)."""
    least, greatest, nulls = {}, {}, {}
    for name, column in zip(rows.column_names, rows.columns, strict=True):
        nulls[name] = column.null_count
        if column.null_count == len(column) or pa.types.is_boolean(column.type):
            continue
        low, high = (v.as_py() for v in pc.min_max(column).values())
        if isinstance(low, float) and not (math.isfinite(low) and math.isfinite(high)):
            continue
        if isinstance(low, dt.date):
            low, high = low.isoformat(), high.isoformat()
        least[name], greatest[name] = low, high
    return json.dumps({"numRecords": rows.num_rows, "minValues": least,
                       "maxValues": greatest, "nullCount": nulls})


class Staged:
    """A table's files as a repair (docs/history.md) changes them, nothing committed: the
    files still live, read and rewritten by the replayed deliveries as they would be a
    committed table's, and at the end the actions that make them the table's in one commit.

    Files are written into the table's own folders, unreferenced until that commit; one
    written and rewritten again before it is never referenced, and is removed after it."""

    def __init__(self, opened: Opened, files: list[dict], added: list[str] = (),
                 widened: dict[str, str] | None = None):
        self.opened, self.path = opened, opened.path
        self.committed = {f["path"]: f for f in files}
        self.live = dict(self.committed)
        self.written: dict[str, AddAction] = {}
        self.added = list(added)        # the columns a contract added, the staged ones too
        self.widened = dict(widened or {})      # the columns widened, the staged ones too
        self.reshaped = False           # a column widened here: the commit is an overwrite

    def widen(self, wide: Source, new: dict[str, str]) -> None:
        """The columns ``new`` widened (:func:`widen`; ``wide``: the source as the table is
        to hold it), staged: every live file rewritten, so that the one commit can be an
        overwrite that changes the schema (it adds every file the table is to hold)."""
        self.widened |= new
        self.reshaped = True
        live = list(self.live.values())
        self.stage([_removal(f) for f in live] + _rewritten(self.path, wide, self.added, live))

    def current(self) -> list[dict]:
        return [f for f in self.live.values() if f["partition.is_current"]]

    def stage(self, actions: list, columns: list[str] = ()) -> None:
        """Take one delivery's actions as if committed, and the columns it adds."""
        self.added += [c for c in columns if c not in self.added]
        for action in actions:
            if isinstance(action, RemoveAction):
                del self.live[action.path]
            else:
                self.written[action.path] = action
                self.live[action.path] = _as_file(action)

    def actions(self) -> list:
        """The one commit's actions: the committed files no longer live removed, the written
        ones still live added."""
        gone = [_removal(f) for path, f in self.committed.items() if path not in self.live]
        return gone + [a for path, a in self.written.items() if path in self.live]

    def discard(self) -> None:
        """Remove the files written and rewritten again before the commit (never referenced)."""
        for path in self.written:
            if path not in self.live:
                storage.remove(self.path / path)


def _as_file(action: AddAction) -> dict:
    """An add action as ``get_add_actions(flatten=True)`` lists it: enough for what a replay
    reads (path, size, partition values, the key's and the dates' least and greatest)."""
    stats = json.loads(action.stats)
    out = {"path": action.path, "size_bytes": action.size}
    for name, value in action.partition_values.items():
        out[f"partition.{name}"] = (value == "true") if name == "is_current" else value
    for end, values in (("min", stats.get("minValues", {})), ("max", stats.get("maxValues", {}))):
        out |= {f"{end}.{name}": value for name, value in values.items()}
    return out


def _removal(file: dict, data_change: bool = True) -> RemoveAction:
    """The action that removes a data file (an add action as the log lists it) from the
    table; ``data_change=False`` for a compaction's (the same rows are added back)."""
    return RemoveAction(file["path"], data_change, int(time.time() * 1000),
                        file["size_bytes"], _partition_values(file))


def _partition_values(file: dict) -> dict[str, str]:
    return {name.split(".", 1)[1]: _partition_text(value) for name, value in file.items()
            if name.startswith("partition.")}


def _changed_from(file: dict, day: dt.date) -> bool:
    """Whether a file (as the log lists it) may hold a version a delivery dated ``day`` or
    later made: one opened from then on, or (history) closed from then on. No statistics: it
    may."""
    newest = file.get("max.effective_from" if file["partition.is_current"]
                      else "max.expiry_date")
    return newest is None or newest >= day


def roll_back(opened: Opened, source: Source, day: dt.date) -> Staged:
    """The table as the deliveries dated before ``day`` left it, staged (docs/history.md): a
    version opened on ``day`` or later goes, and one closed on ``day`` or later is open
    again, current. Exactly the table of those deliveries applied in order, since a delivery
    only opens versions on its date and closes open ones on its date.

    Only files that may hold such versions are read and rewritten (by their statistics): the
    current files a later delivery wrote and the history it closed, however old the table."""
    table = opened.table()
    if table is None:
        return Staged(opened, [])
    files = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    added = added_columns(opened, source)
    staged = Staged(opened, files, added, widened_of(opened, source))
    touched = [f for f in files if _changed_from(f, day)]
    if not touched:
        return staged
    source = of_table(opened, source)
    schema = table_schema(source, added)
    writer = _Files(opened.path, source, schema)
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        rows = pa.concat_tables(list(pool.map(
            lambda f: _rows_of(opened.path, source, f, schema), touched)))
        edge = pa.scalar(day, pa.date32())
        rows = rows.filter(pc.less(rows["effective_from"], edge))
        reopen = pc.greater_equal(rows["expiry_date"], edge)
        rows = rows.set_column(schema.get_field_index("expiry_date"), "expiry_date", pc.if_else(
            reopen, pa.scalar(OPEN_END, pa.date32()), rows["expiry_date"]))
        rows = rows.set_column(schema.get_field_index("is_current"), "is_current",
                               pc.or_(reopen, rows["is_current"]))
        added = list(pool.map(lambda p: writer.write(*p),
                              writer.pack(writer.by_partition(rows))))
    staged.stage([_removal(f) for f in touched] + added)
    return staged


def _rows_of(path: Path, source: Source, file: dict, schema: pa.Schema,
             where: pc.Expression | None = None) -> pa.Table:
    """A data file's rows in the table's columns, ``schema`` (its partition values put
    back, as the log lists them or as a repair stages them; a column added after it was
    written, empty); with ``where``, only the rows it keeps."""
    filesystem, base = storage.arrow(path)
    rows = pq.read_table(f"{base}/{file['path']}", filesystem=filesystem, filters=where)
    for name in partitioning(source):
        rows = rows.append_column(name, pa.repeat(
            pa.scalar(file[f"partition.{name}"]).cast(schema.field(name).type),
            rows.num_rows))
    return conformed(rows, schema)


def compact(opened: Opened, source: Source, groups: list[list[dict]], note: str) -> int:
    """Put each group of data files (add actions, of one partition) together, in key order
    (history in the order its versions began, ``HISTORY_ROW_GROUP``), into files of up to
    ``ROWS_PER_FILE`` rows, as one data-unchanged commit (every version
    reads the rows it read; docs/history.md). Returns the new version."""
    source = of_table(opened, source)
    schema = table_schema(source, added_columns(opened, source))
    writer = _Files(opened.path, source, schema, ordered=True, data_change=False)
    actions: list = []
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        for group in groups:
            rows = pa.concat_tables(list(pool.map(
                lambda f: _rows_of(opened.path, source, f, schema), group)))
            partition = _partition_values(group[0])
            actions += [_removal(f, data_change=False) for f in group]
            actions += list(pool.map(lambda p: writer.write(*p),
                                     writer.pack([(rows, partition)])))
    crashpoint("maintain.files_written")
    return commit(opened, source, actions, {"note": note, "compacted": len(groups)})


def replace_table(path: Path, rebuilt: Path, source: Source, provenance: dict) -> int:
    """Swap a rebuilt table in with one overwrite commit; return the new version.

    Readers hold a snapshot of one table version, and an overwrite only marks the old files
    removed, so a reader sees the old table or the new one, never a mix."""
    schema = table_schema(source)
    if exists(rebuilt):
        staged = Opened(rebuilt)
        schema = table_schema(of_table(staged, source), added_columns(staged, source))
        data = dataset(rebuilt).scanner(columns=schema.names).to_reader()
    else:
        data = schema.empty_table()
    write(path, data, partition_by=partitioning(source), mode="overwrite",
          schema_mode="overwrite", doing=f"committing the rebuilt {source.name} table",
          commit_properties=CommitProperties(
              custom_metadata={COMMIT_KEY: json.dumps(provenance)}))
    return after_commit(Opened(path))
