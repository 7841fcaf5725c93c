"""Delta Lake I/O: the SCD2 tables, the ingest log, and ``read_table`` (SPEC §4).

Each table is partitioned by ``is_current``: the current versions sit together, so the keys and
hashes a file is compared with are read without touching history, and a MERGE rewrites only
current files. Applying a file is one commit (one MERGE that expires and inserts together, or the
first write), and that commit carries the file's name, sha256 and counts in its commit metadata:
a run that died after the commit and before the ingest log finds the file in the table's history
and does not apply it twice.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, QueryBuilder, write_deltalake

from minilake.layout import Layout
from minilake.scd2 import OPEN_END, SCD2_COLUMNS, Changes
from minilake.sources import SOURCES, Source
from minilake.validate import arrow_schema

MERGE_KEY = "__merge_key"
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


CHECKPOINT_EVERY = 20          # commits; keeps opening a table cheap however long its history


def partitioning(source: Source) -> list[str]:
    return ["is_current", *source.partition_by]


def _after_commit(path: Path) -> int:
    table = DeltaTable(str(path))
    version = table.version()
    if version and version % CHECKPOINT_EVERY == 0:
        table.create_checkpoint()
    return version


def exists(path: Path) -> bool:
    return DeltaTable.is_deltatable(str(path))


def current_versions(path: Path, source: Source, keys: pa.Array | None = None) -> pa.Table:
    """Key and row_hash of the current versions (nothing else is read).

    With ``keys``, only versions whose key lies between the smallest and the largest of them
    are read: enough for a transactional file, which says nothing about other keys, and cheap
    when keys grow with time (row groups outside the range are skipped by their statistics)."""
    key_type = table_schema(source).field(source.key).type
    if not exists(path) or (keys is not None and len(keys) == 0):
        return pa.table({source.key: pa.array([], key_type),
                         "row_hash": pa.array([], pa.int64())})
    where = "is_current"
    if keys is not None:
        where += f" AND {_key_range(source.key, keys)}"
    # DataFusion over the Delta log: files whose statistics miss the range are not read.
    result = QueryBuilder().register("t", DeltaTable(str(path))).execute(
        f"SELECT {source.key}, row_hash FROM t WHERE {where}")
    schema = pa.schema([pa.field(source.key, key_type), pa.field("row_hash", pa.int64())])
    return pa.table(result.read_all()).cast(schema)


def _key_range(column: str, keys: pa.Array) -> str:
    """SQL saying ``column`` lies between the smallest and the largest of ``keys``: files whose
    statistics miss the range are skipped."""
    low, high = (_literal(v.as_py()) for v in pc.min_max(keys).values())
    return f"{column} >= {low} AND {column} <= {high}"


def _literal(value: object) -> str:
    """A key value as a SQL literal for a MERGE predicate."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def row_counts(path: Path) -> tuple[int, int]:
    """(current versions, all versions) of a table; (0, 0) before its first file."""
    if not exists(path):
        return 0, 0
    dataset = DeltaTable(str(path)).to_pyarrow_dataset()
    return (dataset.count_rows(filter=pc.field("is_current") == pa.scalar(True)),
            dataset.count_rows())


RECENT_COMMITS = 10


def applied_commits(path: Path) -> dict[tuple[str, str], dict]:
    """The files the table's recent history says were applied: (file, sha256) -> that file's
    counts and the table version. A rebuild's commit names every file it replayed.

    Only the last few commits are read: a source commits a file, then logs it, one file at a
    time, so a run that stopped in between left at most its latest commit unlogged."""
    if not exists(path):
        return {}
    out = {}
    for entry in reversed(DeltaTable(str(path)).history(limit=RECENT_COMMITS)):
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
    for entry in DeltaTable(str(path)).history() if exists(path) else []:
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
    table = table.append_column("effective_from", pa.array([day] * n, pa.date32()))
    table = table.append_column("expiry_date", pa.array([OPEN_END] * n, pa.date32()))
    return table.append_column("is_current", pa.array([True] * n, pa.bool_()))


def apply_changes(path: Path, source: Source, changes: Changes, day: dt.date,
                  provenance: dict) -> int:
    """Apply one file's changes in a single commit; return the new table version."""
    schema = table_schema(source)
    commit = CommitProperties(custom_metadata={COMMIT_KEY: json.dumps(provenance)})
    if not exists(path) or len(changes.expire_keys) == 0:    # only new versions: an append
        rows = _open_versions(changes.inserts, day)
        rows = rows.select(schema.names).cast(schema)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_deltalake(str(path), rows, partition_by=partitioning(source),
                        mode="append" if exists(path) else "error", commit_properties=commit)
        return _after_commit(path)

    business = [f.name for f in schema if f.name not in SCD2_COLUMNS]
    inserts = _open_versions(changes.inserts, day)
    inserts = inserts.select([*business, "effective_from", "expiry_date", "is_current",
                              "row_hash"]).cast(schema)
    inserts = inserts.add_column(0, MERGE_KEY, pa.nulls(inserts.num_rows,
                                                        schema.field(source.key).type))
    n = len(changes.expire_keys)
    expires = pa.table({
        MERGE_KEY: changes.expire_keys,
        **{f.name: pa.nulls(n, f.type) for f in schema if f.name not in
           ("effective_from",)},
        "effective_from": pa.array([day] * n, pa.date32()),
    }).select(inserts.column_names)
    merge_source = pa.concat_tables([expires, inserts.cast(expires.schema)])
    # The key range of the expiring versions lets the MERGE skip files that cannot match.
    table = DeltaTable(str(path))
    (table.merge(merge_source,
                 predicate=(f"t.{source.key} = s.{MERGE_KEY} AND t.is_current = true AND "
                            f"{_key_range(f't.{source.key}', changes.expire_keys)}"),
                 source_alias="s", target_alias="t", commit_properties=commit)
     .when_matched_update(updates={"expiry_date": "s.effective_from", "is_current": "false"})
     .when_not_matched_insert(updates={c: f"s.{c}" for c in schema.names},
                              predicate=f"s.{MERGE_KEY} IS NULL")
     .execute())
    return _after_commit(path)


def replace_table(path: Path, rebuilt: Path, source: Source, provenance: dict) -> int:
    """Swap a rebuilt table in with one overwrite commit; return the new version.

    Readers hold a snapshot of one table version, and an overwrite only marks the old files
    removed, so a reader sees the old table or the new one, never a mix."""
    schema = table_schema(source)
    if exists(rebuilt):
        dataset = DeltaTable(str(rebuilt)).to_pyarrow_dataset()
        data = dataset.scanner(columns=schema.names).to_reader()
    else:
        data = schema.empty_table()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_deltalake(str(path), data, partition_by=partitioning(source), mode="overwrite",
                    schema_mode="overwrite",
                    commit_properties=CommitProperties(
                        custom_metadata={COMMIT_KEY: json.dumps(provenance)}))
    return _after_commit(path)


def _as_date(value: dt.date | str) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def read_table(name: str, as_of: dt.date | str | None = None, root: str | Path = ".",
               version: int | None = None) -> pd.DataFrame:
    """A table as a DataFrame: every version, or with ``as_of`` only those valid on that date
    (``effective_from <= as_of < expiry_date``). ``version`` reads the table as it was at that
    Delta version, for audits (``status`` lists the versions and the file each came from)."""
    layout = Layout.of(root)
    path = layout.table(name)
    if not exists(path):
        known = sorted(p.name for p in (layout.root / "tables").glob("*")
                       if exists(p) and not p.name.startswith("."))
        raise FileNotFoundError(f"no table {name!r} under {layout.root / 'tables'} "
                                f"(tables: {', '.join(known) or 'none yet'})")
    table = DeltaTable(str(path), version=version)
    dataset = table.to_pyarrow_dataset()
    where = None
    if as_of is not None:
        day = pa.scalar(_as_date(as_of), pa.date32())
        where = (pc.field("effective_from") <= day) & (pc.field("expiry_date") > day)
    data = dataset.to_table(filter=where)
    if name in SOURCES:
        schema = table_schema(SOURCES[name])
        data = data.select(schema.names).cast(schema)
        data = data.sort_by([(SOURCES[name].key, "ascending"), ("effective_from", "ascending")])
    return data.to_pandas()


_log_lock = threading.Lock()


def append_log(layout: Layout, rows: list[dict]) -> None:
    """Add rows to the ingest log (one per file); one writer at a time within a process."""
    layout.ingest_log.parent.mkdir(parents=True, exist_ok=True)
    with _log_lock:
        write_deltalake(str(layout.ingest_log), pa.Table.from_pylist(rows, LOG_SCHEMA),
                        mode="append")
        log_table = DeltaTable(str(layout.ingest_log))
        if log_table.version() % CHECKPOINT_EVERY == 0:      # one small file per row otherwise
            log_table.optimize.compact()
            DeltaTable(str(layout.ingest_log)).create_checkpoint()


def read_log(layout: Layout) -> pd.DataFrame:
    if not exists(layout.ingest_log):
        return LOG_SCHEMA.empty_table().to_pandas()
    data = DeltaTable(str(layout.ingest_log)).to_pyarrow_dataset().to_table()
    return data.select(LOG_SCHEMA.names).cast(LOG_SCHEMA).to_pandas()
