"""Rejected rows as a table (docs/quality.md): ``tables/_rejects``, every row of every error
report, queryable with ``minilake sql`` (``SELECT * FROM rejects``).

The error reports stay what they are (one CSV per applied file, written before its commit:
docs/formats.md); the table follows them. After a run's ingest log is committed, the reports
of the files it logged applied (in order, replayed, rebuilt, erased) are read and their rows
replace those reports' rows in the table, in one commit that carries the last ingest-log row
it reflects (``THROUGH``). So the table holds exactly the rows of the error reports, row for
row: a resent file's report replaces the earlier one's rows, as its CSV replaced the CSV; a
run killed before that commit leaves the mark where it was, and the next run's commit
catches up (the same reports read again give the same rows). An erasure rewrites the raw
files, so the reports of the files it replays, and then this table's, and purges its earlier
versions as it does the customer table's.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow as pa

from minilake.contract.sources import ALL_SOURCES
from minilake.crashpoints import crashpoint
from minilake.lake import delta, logs
from minilake.lake.layout import Layout

THROUGH = "minilake.rejects_through"    # commit metadata: the last ingest-log row reflected
RECENT_COMMITS = 10                     # where that mark is looked for
SCHEMA = pa.schema([
    ("source", pa.string()), ("report", pa.string()), ("report_row", pa.int64()),
    ("file", pa.string()), ("file_date", pa.date32()), ("sha256", pa.string()),
    ("errors", pa.string()), ("fields", pa.string()),
    ("logged_at", pa.timestamp("us", "UTC"))])


def through(layout: Layout) -> pd.Timestamp | None:
    """The ``finished_at`` of the last ingest-log row the table reflects; None before its
    first commit (or if no recent commit says: then every report is read again)."""
    path = layout.rejects
    if not delta.exists(path):
        return None
    for entry in delta.delta(path).history(limit=RECENT_COMMITS):
        if THROUGH in entry:
            return pd.Timestamp(json.loads(entry[THROUGH]))
    return None


def _report_rows(layout: Layout, logged: pd.Series) -> pd.DataFrame:
    """The rows of the error report of one logged file (a row of the ingest log), in the
    table's columns: the raw fields as one JSON object, in the report's order."""
    source = ALL_SOURCES[logged["source"]]
    path = layout.error_report(source.name, source.report_stamp(logged["file"]))
    try:
        report = pd.read_csv(io.BytesIO(path.read_bytes()), dtype=str, keep_default_na=False)
    except FileNotFoundError:
        report = pd.DataFrame({"errors": []}, dtype=str)
    fields = [c for c in report.columns if c != "errors"]
    return pd.DataFrame({
        "source": source.name, "report": path.name,
        "report_row": range(1, len(report) + 1), "file": logged["file"],
        "file_date": logged["file_date"], "sha256": logged["sha256"],
        "errors": report["errors"],
        "fields": [json.dumps(dict(zip(fields, values, strict=True)), ensure_ascii=False)
                   for values in report[fields].itertuples(index=False, name=None)],
        "logged_at": logged["finished_at"]})


def sync(layout: Layout, log_rows: pd.DataFrame | None = None) -> int:
    """Bring the table up to the ingest log (``log_rows``: as read, else read here): the
    reports of the files logged applied since its mark replace their rows, in one commit.
    Returns the rows written (0 and no commit when nothing was logged since)."""
    log_rows = logs.read_log(layout) if log_rows is None else log_rows
    since = through(layout)
    applied = log_rows[log_rows["status"] == "applied"]
    if since is not None:
        applied = applied[applied["finished_at"] > since]
    if not len(applied):
        return 0
    # a report per source and date (form): the last file logged for it wrote it
    applied = applied.sort_values("finished_at")
    stamps = [ALL_SOURCES[s].report_stamp(f) for s, f in zip(applied["source"],
                                                              applied["file"], strict=True)]
    latest = applied.assign(_stamp=stamps).drop_duplicates(["source", "_stamp"], keep="last")
    frames = [_report_rows(layout, row) for _, row in latest.iterrows()]
    rows = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), schema=SCHEMA,
                                preserve_index=False)
    reports = sorted({layout.error_report(s, t).name
                      for s, t in zip(latest["source"], latest["_stamp"], strict=True)})
    mark = {THROUGH: json.dumps(log_rows["finished_at"].max().isoformat())}
    crashpoint("rejects.before_commit")
    _replace(layout, rows, reports, mark)
    crashpoint("rejects.committed")
    return rows.num_rows


def _replace(layout: Layout, rows: pa.Table, reports: list[str], mark: dict) -> None:
    """One commit: the rows of ``reports`` replaced by ``rows``, the mark with them."""
    from deltalake import CommitProperties  # on first use: start-up stays light

    path, properties = layout.rejects, CommitProperties(custom_metadata=mark)
    if not delta.exists(path):
        delta.write(path, rows, partition_by=["source"], mode="overwrite",
                    commit_properties=properties, doing="writing the rejected rows")
        return
    listed = ", ".join("'" + r.replace("'", "''") + "'" for r in reports)
    delta.write(path, rows, mode="overwrite", predicate=f"report IN ({listed})",
                commit_properties=properties, doing="writing the rejected rows")
