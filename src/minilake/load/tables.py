"""Delta Lake I/O: the SCD2 tables and the logs (SPEC §4); reading them back by date, version
or time known is ``minilake.load.history``.

Each table is partitioned by ``is_current``: the current versions sit together, so the keys and
hashes a file is compared with are read without touching history, and expiring a version
rewrites only current files. Applying a file is one commit (new files for the new versions,
rewritten current files where versions expire, or the table's first write), and that commit
carries the file's name, sha256 and counts in its commit metadata: a run that died after the
commit and before the ingest log finds the file in the table's history and does not apply it
twice.

Every commit minilake makes is fenced (SPEC §14, docs/guarantees.md): it carries Delta's
transaction identifier, ``txn`` (application id ``minilake.<table>``, a version from the
writing run's epoch and its count of commits to the table, ``minilake.lock``), and is refused
when the table already holds that version or a later run's, or when a commit made since the
snapshot it is based on carries the same application id (delta-rs's own conflict check). A
run paused for any time, then resumed, cannot commit over the runs that went on meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import (
    AddAction,
    PostCommitHookProperties,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)

from minilake.contract.sources import Source
from minilake.crashpoints import crashpoint
from minilake.lake import lock, policy, storage
from minilake.lake.layout import Layout
from minilake.load.keys import found
from minilake.load.scd2 import OPEN_END, Changes
from minilake.load.validate import arrow_schema

COMMIT_KEY = "minilake"

LOG_SCHEMA = pa.schema([
    ("source", pa.string()), ("file", pa.string()), ("file_date", pa.date32()),
    ("sha256", pa.string()), ("status", pa.string()), ("reason", pa.string()),
    ("event", pa.string()), ("note", pa.string()),
    ("size", pa.int64()), ("mtime_ns", pa.int64()),
    ("rows_read", pa.int64()), ("rows_loaded", pa.int64()), ("rows_rejected", pa.int64()),
    ("inserted", pa.int64()), ("updated", pa.int64()), ("expired", pa.int64()),
    ("table_version", pa.int64()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("finished_at", pa.timestamp("us", tz="UTC")),
    ("read_s", pa.float64()), ("validate_s", pa.float64()), ("diff_s", pa.float64()),
    ("commit_s", pa.float64()),
])


def table_schema(source: Source) -> pa.Schema:
    business = arrow_schema(source.schema)
    return pa.schema([*business, pa.field("effective_from", pa.date32(), nullable=False),
                      pa.field("expiry_date", pa.date32(), nullable=False),
                      pa.field("is_current", pa.bool_(), nullable=False),
                      pa.field("row_hash", pa.int64(), nullable=False)])


# Commits between checkpoints. Opening a table replays the commits since its last checkpoint
# and a daily run opens ~20 tables: at 20, day 60 of a 10x lake spent 0.23 s opening them
# against 0.05-0.08 s on day 2; at 5, 0.12 s (benchmarks/README, flat cost).
CHECKPOINT_EVERY = 5


def partitioning(source: Source) -> list[str]:
    return ["is_current", *source.partition_by]


def exists(path: Path) -> bool:
    if storage.is_local(path) and not Path(path).is_dir():     # a file (.run-state.json)
        return False
    return DeltaTable.is_deltatable(storage.uri(path), storage.delta_options(path))


def delta(path: Path, version: int | None = None) -> DeltaTable:
    """The Delta table at ``path`` (local or on S3), at ``version`` or the latest."""
    return DeltaTable(storage.uri(path), version=version,
                      storage_options=storage.delta_options(path))


# After a commit, delta-rs checkpoints by the table's interval but never cleans up the log on
# its own: removing versions is the history step's (SPEC §14, minilake.policy).
KEEP_LOG = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def created(path: Path) -> dict[str, str]:
    """The properties a table minilake makes carries from its first commit: the history
    policy of its root."""
    return policy.of_table(path).properties()


def app_id(path: Path) -> str:
    """The application id of minilake's commits to the table at ``path`` (Delta's ``txn``)."""
    return f"minilake.{path.name}"


def _where(path: Path) -> str:
    """A table's path for messages: from ``tables/`` on, else as it is."""
    parts = str(path).split("/tables/", 1)
    return f"tables/{parts[1]}" if len(parts) == 2 else str(path)


def fenced(path: Path, table: DeltaTable | None, doing: str,
           metadata: dict | None = None) -> CommitProperties:
    """The properties of a commit to the table at ``path``, based on the snapshot ``table``
    (None: the table is created), that only the run holding the root can make: its ``txn``
    carries the run's next version for the table, refused here if the snapshot holds that
    version or a later run's already (``LeaseLost``, naming ``doing``), and by delta-rs if
    another commit carrying this application id lands after the snapshot (see
    :func:`refused`). Outside a held root (tools, tests) a commit is not fenced."""
    claim = lock.claim_of(path)
    if claim is None:
        return CommitProperties(custom_metadata=metadata)
    claim.fence(doing)
    app, version = app_id(path), claim.next_version(str(path))
    held = table.transaction_version(app) if table is not None else None
    if held is not None and held >= version:
        raise claim.lost(doing, f"{_where(path)} holds the commits of a run that took the "
                                f"root later (txn {held})")
    return CommitProperties(custom_metadata=metadata, app_transactions=[
        Transaction(app, version, int(time.time() * 1000))])


@contextlib.contextmanager
def refused(path: Path, doing: str) -> Iterator[None]:
    """A commit to the table at ``path`` that delta-rs refuses (another commit landed after
    its snapshot: a later run's, or the table made meanwhile) stops the run with one line,
    ``LeaseLost``, when the root is held (then only another run could have committed)."""
    try:
        yield
    except (CommitFailedError, DeltaError) as error:
        claim = lock.claim_of(path)
        if claim is None or not (isinstance(error, CommitFailedError)
                                 or "already exists" in str(error)):
            raise
        raise claim.lost(doing, f"another run committed to {_where(path)} since this run "
                                f"read it") from None


def write(path: Path, data, *, doing: str | None = None, table: DeltaTable | None = None,
          **kwargs) -> None:
    """``write_deltalake`` at ``path`` (local or on S3), fenced (:func:`fenced`): based on
    ``table`` (an open handle), else on the table as it is now, or creating it (refused if
    another run made it meanwhile)."""
    doing = doing or f"writing {_where(path)}"
    if table is None and exists(path):
        table = delta(path)
    kwargs["commit_properties"] = fenced(path, table, doing, getattr(
        kwargs.get("commit_properties"), "custom_metadata", None))
    if table is None:
        storage.mkdirs(path.parent)
        kwargs["configuration"] = {**kwargs.get("configuration", {}), **created(path)}
        if lock.claim_of(path) is not None:   # made by this commit, or by nobody
            kwargs["mode"] = "error"
            kwargs.pop("schema_mode", None)
            kwargs.pop("predicate", None)
    else:
        kwargs.pop("configuration", None)     # a table's properties change by policy only
    with refused(path, doing):
        write_deltalake(storage.uri(path) if table is None else table, data,
                        storage_options=storage.delta_options(path),
                        post_commithook_properties=KEEP_LOG, **kwargs)


def dataset(path: Path, version: int | None = None, where: list | None = None,
            table: DeltaTable | None = None) -> ds.Dataset:
    """A table's live files (at ``version``, else the latest; or of the open ``table``) as a
    pyarrow dataset, read by Arrow's own local filesystem.

    ``where`` (filters as ``read`` takes them) keeps only the files whose partition values
    and column statistics may hold matching rows, picked from the Delta log before any file
    is set up: a dataset of every file costs ~0.5 ms a file (60 ms for a table of 120), which
    grew a daily run with its history. Rows are not filtered by it (``read`` does both).

    delta-rs's default dataset reads through a filesystem written in Python: Arrow's I/O
    threads take the GIL for every file they open, while a delta-rs call on another thread
    may hold the GIL and wait for delta-rs's runtime, whose threads wait for those reads (a
    rebuild's swap streams such a dataset into ``write_deltalake``). Every minilake table is
    a local folder or an S3 prefix, read by Arrow's own filesystem for either, so no Python
    runs inside a read."""
    table = table if table is not None else delta(path, version)
    filesystem, base = storage.arrow(path)
    return table.to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(base, filesystem),
                                    file_pruning_predicate=where)


def read(path: Path, filters: list, columns: list[str] | None = None,
         also: pc.Expression | None = None, table: DeltaTable | None = None) -> pa.Table:
    """A table's rows (``columns``) matching ``filters`` and the expression ``also``.

    ``filters`` are in the form delta-rs and pyarrow share, ``(column, op, value)`` tuples:
    a list of them ANDed, or a list of such lists ORed. Written once, they pick the files
    from the Delta log (``dataset``'s ``where``) and then the rows; ``also`` only filters
    rows (a condition on thousands of keys, say). A group with an empty ``in`` matches
    nothing."""
    groups = filters if filters and isinstance(filters[0], list) else [filters]
    groups = [g for g in groups if not any(op == "in" and not len(v) for _, op, v in g)]
    if not groups:          # nothing matches: the columns' types from the log, no file set up
        schema = pa.schema((table if table is not None else delta(path)).schema().to_arrow())
        return pa.schema([schema.field(n) for n in columns or schema.names]).empty_table()
    wanted = pq.filters_to_expression(groups)
    return dataset(path, where=groups, table=table).to_table(
        columns=columns, filter=wanted if also is None else wanted & also)


class Opened:
    """A table's path and, once the table exists, one handle on it brought up to date before
    each use: for the files of one run, which holds the root's lock (no other writer), so
    that each file does not open the table again (a few ms each)."""

    def __init__(self, path: Path):
        self.path = path
        self._table: DeltaTable | None = None

    def table(self) -> DeltaTable | None:
        """The table at its latest version, or None before its first commit."""
        if self._table is not None:
            self._table.update_incremental()
        elif exists(self.path):
            self._table = delta(self.path)
        return self._table


def _after_commit(opened: Opened) -> int:
    """The version just committed, read from the run's handle (checkpointed every
    ``CHECKPOINT_EVERY`` versions)."""
    table = opened.table()
    version = table.version()
    if version and version % CHECKPOINT_EVERY == 0:
        table.create_checkpoint()
    return version


def current_files(opened: Opened) -> list[dict]:
    """The table's current data files (its add actions in the ``is_current`` partition, with
    their key statistics), at the handle's version; none before the first commit."""
    table = opened.table()
    if table is None:
        return []
    files = pa.table(table.get_add_actions(flatten=True))
    return files.filter(files["partition.is_current"]).to_pylist()


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


def row_counts(path: Path) -> tuple[int, int]:
    """(current versions, all versions) of a table; (0, 0) before its first file."""
    if not exists(path):
        return 0, 0
    data = dataset(path)
    return (data.count_rows(filter=pc.field("is_current") == pa.scalar(True)),
            data.count_rows())


RECENT_COMMITS = 10


def applied_commits(opened: Opened) -> dict[tuple[str, str], dict]:
    """The files the table's recent history says were applied: (file, sha256) -> that file's
    counts and the table version. A rebuild's commit names every file it replayed.

    Only the last few commits are read: a source commits a file, then logs it, one file at a
    time, so a run that stopped in between left at most its latest commit unlogged."""
    table = opened.table()
    if table is None:
        return {}
    out = {}
    for entry in reversed(table.history(limit=RECENT_COMMITS)):
        if COMMIT_KEY in entry:
            meta = json.loads(entry[COMMIT_KEY])
            for applied in meta.get("files", [meta]):
                out[applied["file"], applied["sha256"]] = {**applied,
                                                           "table_version": entry["version"]}
    return out


def versions(path: Path) -> pd.DataFrame:
    """``version``, ``committed_at``, ``operation``, ``files``: each table version and the
    file(s) it came from."""
    rows = []
    for entry in delta(path).history() if exists(path) else []:
        meta = json.loads(entry.get(COMMIT_KEY, "{}"))
        files = [f["file"] for f in meta.get("files", [meta] if "file" in meta else [])]
        what = meta.get("note", "")
        rows.append({"version": entry["version"],
                     "committed_at": pd.Timestamp(entry["timestamp"], unit="ms", tz="UTC"),
                     "operation": ("REBUILD" if "files" in meta else entry.get("operation")),
                     "files": ", ".join(files) if len(files) < 4 else
                     f"{len(files)} files: {files[0]} ... {files[-1]}",
                     "note": what})
    return pd.DataFrame(rows, columns=["version", "committed_at", "operation", "files", "note"]
                        ).sort_values("version").reset_index(drop=True)


def _open_versions(table: pa.Table, day: dt.date) -> pa.Table:
    """New versions: valid from ``day`` until further notice."""
    n = table.num_rows
    table = table.append_column("effective_from", pa.repeat(pa.scalar(day, pa.date32()), n))
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
    engine cut a table into ranges again, SPEC §13)."""
    schema = table_schema(source)
    rows = _open_versions(changes.inserts, day).select(schema.names).cast(schema)
    writer = _Files(path, source, schema, ordered)
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        rewritten = [] if len(changes.expire_keys) == 0 else list(pool.map(
            lambda f: writer.expire(f, changes.expire_keys, day),
            overlapping(files, source, changes.expire_keys)))
        pieces = [p for _, small in rewritten for p in small] + writer.by_partition(rows)
        added = list(pool.map(lambda p: writer.write(*p), writer.pack(pieces)))
    return [a for done, _ in rewritten for a in done] + added


def commit(opened: Opened, source: Source, actions: list, provenance: dict) -> int:
    """One commit of a file's actions, carrying its provenance; the table's first commit
    creates it. Returns the new version."""
    schema = table_schema(source)
    doing = f"committing {source.name}/{provenance['file']}" if "file" in provenance else \
        f"committing to {_where(opened.path)}"
    table = opened.table()
    properties = fenced(opened.path, table, doing, {COMMIT_KEY: json.dumps(provenance)})
    crashpoint("commit.fenced")
    with refused(opened.path, doing):
        if table is None:
            storage.mkdirs(opened.path)
            create_table_with_add_actions(
                storage.uri(opened.path), DeltaSchema.from_arrow(schema), actions,
                mode="error", partition_by=partitioning(source),
                configuration=created(opened.path),
                storage_options=storage.delta_options(opened.path),
                commit_properties=properties, post_commithook_properties=KEEP_LOG)
        else:
            table.create_write_transaction(actions, mode="append", schema=schema,
                                           partition_by=partitioning(source),
                                           commit_properties=properties,
                                           post_commithook_properties=KEEP_LOG)
    return _after_commit(opened)


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


class _Files:
    """Data files of one table, written the way delta-rs writes them: Hive-style partition
    folders, partition columns kept out of the file, statistics for data skipping."""

    def __init__(self, root: Path, source: Source, schema: pa.Schema, ordered: bool = False):
        self.root, self.source, self.ordered = root, source, ordered
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
                rows.select(self.stored.names).cast(self.stored))
        packed = []
        for partition, tables in groups.items():
            if self.ordered:            # one sorted run, cut into files: no two overlap
                rows = pa.concat_tables(tables).sort_by(self.source.key)
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
        rows = rows.select(self.stored.names).cast(self.stored)
        pq.write_table(rows, target, compression="snappy", use_dictionary=self.dictionary,
                       write_statistics=self.statistics, filesystem=self.filesystem)
        info = self.filesystem.get_file_info(target)
        return AddAction(relative, info.size, partition, info.mtime_ns // 1_000_000,
                         True, _statistics(rows))

    def expire(self, file: dict, keys: pa.Array, day: dt.date) -> tuple[list, list]:
        """Rewrite one current file without the versions of ``keys``, which go, closed on
        ``day``, to the history partition. Returns (actions, pieces): the file's removal and
        the files written, and the pieces too small for a file of their own (for
        :meth:`pack`). ([], []) if the file holds none of the keys."""
        rows = pq.read_table(f"{self.base}/{file['path']}", filesystem=self.filesystem)
        held = rows[self.source.key].combine_chunks()
        ends = pa.array(found(held, keys.cast(held.type)))
        if not pc.any(ends).as_py():
            return [], []
        partition = {k: _partition_text(file[f"partition.{k}"]) for k in self.partitions}
        actions = [RemoveAction(file["path"], True, int(time.time() * 1000),
                                file["size_bytes"], partition)]
        closed = rows.filter(ends)
        closed = closed.set_column(closed.schema.get_field_index("expiry_date"), "expiry_date",
                                   pa.repeat(pa.scalar(day, pa.date32()), closed.num_rows))
        pieces = [(closed, {**partition, "is_current": "false"})]
        kept = rows.filter(pc.invert(ends))
        if kept.num_rows >= ROWS_PER_FILE // 2 and not self.ordered:
            actions.append(self.write(kept, partition))
        elif kept.num_rows:
            pieces.append((kept, partition))
        return actions, pieces


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


def remove_orphans(path: Path, dry_run: bool = False,
                   keep_versions: list[int] | None = None) -> list[str]:
    """Data files of the table at ``path`` that no version of ``keep_versions`` (default:
    every version) refers to, removed; sorted, relative to the table.

    Only files written before the run holding the root took it are removed: a file written
    since is a commit under way (this run's, or, if this run was paused and lost the root,
    the next run's), which a vacuum must not pull from under it. Each removal is fenced."""
    table = delta(path)
    keep = list(versions(path)["version"]) if keep_versions is None else keep_versions
    found = table.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False,
                         full=True, keep_versions=keep)
    claim = lock.claim_of(path)
    if claim is not None and found:
        filesystem, base = storage.arrow(path)
        infos = filesystem.get_file_info([f"{base}/{name}" for name in found])
        found = [name for name, info in zip(found, infos, strict=True)
                 if info.mtime_ns is not None and info.mtime_ns // 1_000_000 < claim.since_ms]
    if not dry_run:
        for name in found:
            storage.remove(path / name)
    return sorted(found)


def replace_table(path: Path, rebuilt: Path, source: Source, provenance: dict) -> int:
    """Swap a rebuilt table in with one overwrite commit; return the new version.

    Readers hold a snapshot of one table version, and an overwrite only marks the old files
    removed, so a reader sees the old table or the new one, never a mix."""
    schema = table_schema(source)
    if exists(rebuilt):
        data = dataset(rebuilt).scanner(columns=schema.names).to_reader()
    else:
        data = schema.empty_table()
    write(path, data, partition_by=partitioning(source), mode="overwrite",
          schema_mode="overwrite", doing=f"committing the rebuilt {source.name} table",
          commit_properties=CommitProperties(
              custom_metadata={COMMIT_KEY: json.dumps(provenance)}))
    return _after_commit(Opened(path))


class IngestLog:
    """A root's ingest log, opened once for a run (which holds the root's lock: no other
    writer) rather than on every file's row; the sources' threads append one at a time."""

    def __init__(self, layout: Layout):
        self._opened = Opened(layout.ingest_log)
        self._lock = threading.Lock()

    def append(self, rows: list[dict]) -> None:
        """Add rows (one per file)."""
        path = self._opened.path
        data = pa.Table.from_pylist(rows, LOG_SCHEMA)
        files = ", ".join(f"{r['source']}/{r['file']}" for r in rows[:3])
        with self._lock:
            write(path, data, mode="append", table=self._opened.table(),
                  doing=f"logging {files}{' …' if len(rows) > 3 else ''} in the ingest log")
            compact(path, self._opened.table())


def compact(path: Path, table: DeltaTable) -> None:
    """A log table's small files put together (a data-unchanged commit, fenced like the
    others) and checkpointed, every ``CHECKPOINT_EVERY`` versions: one small file per row
    otherwise."""
    if not table.version() or table.version() % CHECKPOINT_EVERY:
        return
    doing = f"compacting {_where(path)}"
    with refused(path, doing):
        table.optimize.compact(commit_properties=fenced(path, table, doing),
                               post_commithook_properties=KEEP_LOG)
    delta(path).create_checkpoint()


PULL_LOG_SCHEMA = pa.schema([
    ("source", pa.string()), ("file", pa.string()), ("file_date", pa.date32()),
    ("url", pa.string()), ("pages", pa.int64()), ("records", pa.int64()),
    ("bytes", pa.int64()), ("sha256", pa.string()), ("outcome", pa.string()),
    ("reason", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("finished_at", pa.timestamp("us", tz="UTC")),
])


def append_pull_log(layout: Layout, row: dict) -> None:
    """One row per pull (SPEC §8), one commit; the caller holds the root's lock."""
    path = layout.pull_log
    write(path, pa.Table.from_pylist([row], PULL_LOG_SCHEMA), mode="append",
          doing=f"logging the pull of {row['source']} for {row['file_date']}")
    compact(path, delta(path))


ERASURE_LOG_SCHEMA = pa.schema([
    ("request_file", pa.string()), ("customer_id", pa.int64()), ("named_by", pa.string()),
    ("versions_rewritten", pa.int64()), ("files_rewritten", pa.int64()),
    ("history_from_version", pa.int64()), ("erased_at", pa.timestamp("us", tz="UTC")),
])


def append_erasure_log(layout: Layout, rows: list[dict]) -> None:
    """One commit for a request's rows (ids and counts, never personal data, SPEC §9)."""
    write(layout.erasure_log, pa.Table.from_pylist(rows, ERASURE_LOG_SCHEMA), mode="append")


def read_erasure_log(layout: Layout) -> pd.DataFrame:
    """The erasure log, oldest first (empty, with its columns, before the first erasure)."""
    if not exists(layout.erasure_log):
        return ERASURE_LOG_SCHEMA.empty_table().to_pandas()
    # customer ids stay exact int64 where some rows have none (not floats)
    frame = dataset(layout.erasure_log).to_table().to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return frame.sort_values("erased_at", kind="stable").reset_index(drop=True)


def read_pull_log(layout: Layout) -> pd.DataFrame:
    """The pull log, oldest first (empty, with its columns, before the first pull)."""
    if not exists(layout.pull_log):
        return PULL_LOG_SCHEMA.empty_table().to_pandas()
    frame = dataset(layout.pull_log).to_table().to_pandas()
    return frame.sort_values("finished_at", kind="stable").reset_index(drop=True)


def read_log(layout: Layout) -> pd.DataFrame:
    if not exists(layout.ingest_log):
        return LOG_SCHEMA.empty_table().to_pandas()
    data = dataset(layout.ingest_log).to_table()
    return data.select(LOG_SCHEMA.names).cast(LOG_SCHEMA).to_pandas()
