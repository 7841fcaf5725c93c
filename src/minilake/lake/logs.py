"""The root's logs: append-only Delta tables of rows minilake writes (docs/formats.md).

One log type serves the four: the ingest log (a row per delivery applied, quarantined or
superseded: what a run knows of the past, :class:`Ledger`), the pull log (a row per pull),
the erasure log (ids and counts of each erasure request, never personal data) and the schema
log (a row per change of a file's columns from its source's declaration, docs/contracts.md).
Each append is one fenced commit; every ``CHECKPOINT_EVERY`` commits a log's small files
are put together (a data-unchanged commit) and checkpointed. A log is read whole, oldest row
first.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from minilake.crashpoints import crashpoint
from minilake.lake import delta, lock
from minilake.lake.layout import Layout
from minilake.lake.lock import LeaseLost

log = logging.getLogger(__name__)

INGEST_SCHEMA = pa.schema([
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


PULL_LOG_SCHEMA = pa.schema([
    ("source", pa.string()), ("file", pa.string()), ("file_date", pa.date32()),
    ("url", pa.string()), ("pages", pa.int64()), ("records", pa.int64()),
    ("bytes", pa.int64()), ("sha256", pa.string()), ("outcome", pa.string()),
    ("reason", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("finished_at", pa.timestamp("us", tz="UTC")),
])


ERASURE_LOG_SCHEMA = pa.schema([
    ("request_file", pa.string()), ("customer_id", pa.int64()), ("named_by", pa.string()),
    ("versions_rewritten", pa.int64()), ("files_rewritten", pa.int64()),
    ("history_from_version", pa.int64()), ("erased_at", pa.timestamp("us", tz="UTC")),
])


# a row per change of a file's columns from its source's declaration (docs/contracts.md)
SCHEMA_LOG_SCHEMA = pa.schema([
    ("source", pa.string()), ("file", pa.string()), ("file_date", pa.date32()),
    ("sha256", pa.string()), ("change", pa.string()),
    ("logged_at", pa.timestamp("us", tz="UTC")),
])


@dataclass(frozen=True)
class Log:
    """One of the root's logs: where it lives (a :class:`Layout` property), its columns, the
    column that orders its rows, and how its rows are named in a fenced commit's message."""

    name: str                      # the Layout property: ingest_log, pull_log, erasure_log
    schema: pa.Schema
    order_by: str
    nullable_ints: bool = False    # int64 columns with missing values stay exact (not float)

    def path(self, layout: Layout) -> Path:
        return getattr(layout, self.name)

    def append(self, layout: Layout, rows: list[dict], doing: str) -> None:
        """One commit of ``rows`` (fenced), then compaction when its turn comes. A run that
        holds the root and has read the log keeps its rows with the new ones (:meth:`read`)."""
        path = self.path(layout)
        data = pa.Table.from_pylist(rows, self.schema)
        claim = lock.claim_of(path)
        kept = claim.logs.pop(str(path), None) if claim is not None else None
        if kept is not None and kept[0] != delta.delta(path).version():
            kept = None
        delta.write(path, data, mode="append", doing=doing)
        delta.compact(path, delta.delta(path))
        if kept is not None:
            claim.logs[str(path)] = (delta.delta(path).version(), self._ordered(
                pd.concat([kept[1], self._frame(data)], ignore_index=True)))

    def read(self, layout: Layout) -> pd.DataFrame:
        """Every row, oldest first; empty, with its columns, before the first. Read once a
        run: while this process holds the root, the rows it read (and appended since) are
        kept with the log's version, and given again while the log is at that version."""
        path = self.path(layout)
        if not delta.exists(path):
            return self.schema.empty_table().to_pandas()
        claim = lock.claim_of(path)
        if claim is None:
            return self._ordered(self._frame(delta.dataset(path).to_table()))
        version = delta.delta(path).version()
        kept = claim.logs.get(str(path))
        if kept is None or kept[0] != version:
            kept = claim.logs[str(path)] = (version, self._ordered(self._frame(
                delta.dataset(path).to_table())))
        return kept[1].copy()

    def _frame(self, data: pa.Table) -> pd.DataFrame:
        mapper = {pa.int64(): pd.Int64Dtype()}.get if self.nullable_ints else None
        return data.select(self.schema.names).cast(self.schema).to_pandas(types_mapper=mapper)

    def _ordered(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(self.order_by, kind="stable").reset_index(drop=True)


INGEST = Log("ingest_log", INGEST_SCHEMA, "finished_at")
PULL = Log("pull_log", PULL_LOG_SCHEMA, "finished_at")
ERASURE = Log("erasure_log", ERASURE_LOG_SCHEMA, "erased_at", nullable_ints=True)
SCHEMA = Log("schema_log", SCHEMA_LOG_SCHEMA, "logged_at")
LOG_SCHEMA = INGEST_SCHEMA


class IngestLog:
    """A root's ingest log for a run (which holds the root's lock: no other writer, and one
    handle on the log, :func:`delta.delta`); the sources' threads append one at a time.

    The row of a file applied in order waits for the run's one commit of such rows
    (:meth:`later`, then :meth:`flush` when the run's files are done, as the ``with`` block
    ends): its table's commit names it already, so a run that stops before the log's commit
    leaves nothing unknown, and the next run logs it from the table's history
    (docs/guarantees.md). Every other row (a quarantined file, before the file moves; a
    repair's files) is committed at once, with the waiting rows before it."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self._lock = threading.Lock()
        self._waiting: list[dict] = []

    def __enter__(self) -> IngestLog:
        return self

    def __exit__(self, kind, error, trace) -> None:
        """The waiting rows committed, unless the root is no longer this run's (the run that
        took it over logs them from the tables' history); after another error, a log commit
        that fails too is said, not raised over it."""
        if kind is not None and issubclass(kind, LeaseLost):
            return
        if kind is None:
            self.flush()
            crashpoint("ingest.logged")
            return
        try:
            self.flush()
        except Exception as failed:     # noqa: BLE001 - the run's own error is the one raised
            log.warning("%s: the rows of %d applied file(s) are not logged yet (%s); the next "
                        "run logs them from the tables' history", delta.named(
                            self.layout.ingest_log), len(self._waiting), failed)

    def later(self, rows: list[dict]) -> None:
        """Rows (one per file) for the run's one commit of waiting rows."""
        with self._lock:
            self._waiting += rows

    def append(self, rows: list[dict]) -> None:
        """Rows committed now (one per file), after those waiting."""
        with self._lock:
            everything = self._waiting + rows
            if not everything:
                return
            files = ", ".join(f"{r['source']}/{r['file']}" for r in everything[:3])
            more = " …" if len(everything) > 3 else ""
            INGEST.append(self.layout, everything,
                          doing=f"logging {files}{more} in the ingest log")
            self._waiting = []

    def flush(self) -> None:
        """The waiting rows committed (nothing if none wait)."""
        self.append([])


def append_pull_log(layout: Layout, row: dict) -> None:
    """One row per pull, one commit; the caller holds the root's lock."""
    PULL.append(layout, [row], doing=f"logging the pull of {row['source']} for "
                                     f"{row['file_date']}")


def append_erasure_log(layout: Layout, rows: list[dict]) -> None:
    """One commit for a request's rows (ids and counts, never personal data)."""
    ERASURE.append(layout, rows, doing=f"logging the erasure request {rows[0]['request_file']}")


def log_schema_changes(layout: Layout, row: dict, changes: list[str]) -> None:
    """One commit of a file's column changes (``row``: its source, file, file date and
    sha256), unless the log has them already: a run that stopped after logging them, or a
    repair replaying the file, does not log them twice. The sources' threads log one at a
    time."""
    with _SCHEMA_LOGGING:
        logged = read_schema_log(layout)
        if ((logged["file"] == row["file"]) & (logged["sha256"] == row["sha256"])).any():
            return
        now = dt.datetime.now(dt.UTC)
        SCHEMA.append(layout, [{**row, "change": change, "logged_at": now}
                               for change in changes],
                      doing=f"logging the column changes of {row['source']}/{row['file']}")


_SCHEMA_LOGGING = threading.Lock()


def read_schema_log(layout: Layout) -> pd.DataFrame:
    """The schema log, oldest first (empty, with its columns, before the first change)."""
    return SCHEMA.read(layout)


def read_log(layout: Layout) -> pd.DataFrame:
    """The ingest log, oldest row first."""
    return INGEST.read(layout)


def read_pull_log(layout: Layout) -> pd.DataFrame:
    """The pull log, oldest first (empty, with its columns, before the first pull)."""
    return PULL.read(layout)


def read_erasure_log(layout: Layout) -> pd.DataFrame:
    """The erasure log, oldest first (empty, with its columns, before the first erasure)."""
    return ERASURE.read(layout)


class Ledger:
    """What the ingest log says about each delivered (file, sha256), latest row first.

    Every lookup is a dict built here, once per run, from the log's columns as lists: a
    pandas filter or ``.loc`` per file made a run's overhead grow with history (0.4 s after
    60 days at 10x), and so did sorting, deduplicating and indexing the whole log as a frame
    (26 ms a run at three years of daily files, against 7 ms a month in). The sources'
    threads then share nothing but plain dicts they only read."""

    def __init__(self, log_rows: pd.DataFrame):
        self._rows = log_rows
        finished = log_rows["finished_at"].to_numpy("datetime64[us]")
        # the log's own order (read_log sorts it): rows of equal times stay in it
        order = (None if (finished[1:] >= finished[:-1]).all()
                 else np.argsort(finished, kind="stable").tolist())

        def column(values: pd.Series) -> list:
            got = values.tolist()
            return got if order is None else [got[i] for i in order]

        keys = list(zip(column(log_rows["file"]), column(log_rows["sha256"]), strict=True))
        # a dict keeps the value given last for a key: the row of each (file, sha256) that
        # finished last
        statuses = column(log_rows["status"])
        self._status = dict(zip(keys, statuses, strict=True))
        self._keys, self._order = keys, order       # for the reasons, asked of a few
        last_row = dict(zip(keys, range(len(keys)), strict=True))
        applied = sorted(i for i in last_row.values() if statuses[i] == "applied")
        sources, days = column(log_rows["source"]), column(log_rows["file_date"])
        stated = column(log_rows["size"].notna() & log_rows["mtime_ns"].notna())
        sizes = column(log_rows["size"].fillna(-1).astype("int64"))
        times = column(log_rows["mtime_ns"].fillna(-1).astype("int64"))
        self._applied_sha: dict[str, str] = {}   # file -> sha256 of its applied row logged last
        # source -> (file date, file) of the last applied file, in replay order
        self._last: dict[str, tuple[dt.date, str]] = {}
        # (file, size, mtime_ns) -> (sha256, source, file date) of the latest applied row
        # (rows logged without a size or time trust nothing)
        self._trusted: dict[tuple[str, int, int], tuple[str, str, dt.date]] = {}
        for i in applied:
            name, sha = keys[i]
            self._applied_sha[name] = sha
            self._last[sources[i]] = max(self._last.get(sources[i], (days[i], name)),
                                         (days[i], name))
            if stated[i]:
                self._trusted[name, sizes[i], times[i]] = sha, sources[i], days[i]
        # source -> the latest table version a row names: the commits after it are the
        # ones a stopped run made and did not log (docs/guarantees.md)
        versions = log_rows.groupby("source")["table_version"].max().dropna()
        self._version = {source: int(v) for source, v in versions.items()}

    @functools.cached_property
    def latest(self) -> pd.DataFrame:
        """The log's row that finished last for each (file, sha256), indexed by them."""
        ordered = self._rows.sort_values("finished_at", kind="stable")
        return ordered.drop_duplicates(["file", "sha256"], keep="last").set_index(
            ["file", "sha256"])

    def status(self, name: str, sha: str) -> str | None:
        return self._status.get((name, sha))

    @functools.cached_property
    def _reason(self) -> dict[tuple[str, str], str]:
        reasons = self._rows["reason"].tolist()
        if self._order is not None:
            reasons = [reasons[i] for i in self._order]
        return dict(zip(self._keys, reasons, strict=True))

    def reason(self, name: str, sha: str) -> str:
        return self._reason[name, sha]

    def applied_sha(self, name: str) -> str | None:
        return self._applied_sha.get(name)

    def last_applied(self, source: str) -> tuple[dt.date, str] | None:
        """(file date, name) of the source's last applied file in replay order."""
        return self._last.get(source)

    def last_version(self, source: str) -> int | None:
        """The latest version of the source's table that the log names (None: none)."""
        return self._version.get(source)

    def trusted_sha(self, name: str, size: int, mtime_ns: int) -> str | None:
        """The sha256 logged for an applied file that has not changed since (same name, size
        and modification time), so that a run does not re-read the whole archive."""
        trusted = self._trusted.get((name, size, mtime_ns))
        return trusted[0] if trusted else None

    def trusted(self, name: str, size: int, mtime_ns: int) -> tuple[str, str, dt.date] | None:
        """:meth:`trusted_sha`, with the source and file date its row logged: (sha256,
        source, file date)."""
        return self._trusted.get((name, size, mtime_ns))
