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
versions as it does the customer table's. Each row names the run that put it in the table
(``run``: its report is ``reports/runs/<run>.html``; a rebuild or an erasure outside a run, an
id of the same form from when it synced).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from minilake.contract.sources import ALL_SOURCES, of_root, source_of
from minilake.crashpoints import crashpoint
from minilake.formats.readers import UnreadableFile
from minilake.lake import delta, lock, logs
from minilake.lake.layout import Layout
from minilake.load import parts

THROUGH = "minilake.rejects_through"    # commit metadata: the last ingest-log row reflected
RECENT_COMMITS = 10                     # where that mark is looked for
SCHEMA = pa.schema([
    ("source", pa.string()), ("report", pa.string()), ("report_row", pa.int64()),
    ("file", pa.string()), ("file_date", pa.date32()), ("sha256", pa.string()),
    ("errors", pa.string()), ("fields", pa.string()),
    ("logged_at", pa.timestamp("us", "UTC")), ("run", pa.string())])


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


def report_of(layout: Layout, source: str, file: str) -> list[dict[str, str]]:
    """The rows of a delivery's error report, each its raw fields by column and ``errors``,
    read with ``csv`` (most reports are a header alone); none if it has no report. What the
    table, the run report and the lineage read the reports with."""
    spec = ALL_SOURCES[source]
    try:
        text = layout.error_report(spec.name, spec.report_stamp(file)).read_bytes()
    except FileNotFoundError:
        return []
    return list(csv.DictReader(io.StringIO(text.decode("utf-8"), newline="")))


def _report_rows(layout: Layout, logged: dict, run: str) -> list[dict]:
    """The rows of the error report of one logged file (a row of the ingest log), in the
    table's columns: the raw fields as one JSON object, in the report's order."""
    source = ALL_SOURCES[logged["source"]]
    report = layout.error_report(source.name, source.report_stamp(logged["file"])).name
    return [{"source": source.name, "report": report, "report_row": n,
             "file": logged["file"], "file_date": logged["file_date"],
             "sha256": logged["sha256"], "errors": row.pop("errors"),
             "fields": json.dumps(row, ensure_ascii=False),
             "logged_at": logged["finished_at"], "run": run}
            for n, row in enumerate(report_of(layout, source.name, logged["file"]), start=1)]


def sync(layout: Layout, log_rows: pd.DataFrame | None = None) -> int:
    """Bring the table up to the ingest log (``log_rows``: as read, else read here): the
    reports of the files logged applied since its mark replace their rows, in one commit.
    Returns the rows written (0 and no commit when nothing was logged since)."""
    log_rows = logs.read_log(layout) if log_rows is None else log_rows
    # a table made before a column of SCHEMA existed is made again from every report
    whole = delta.exists(layout.rejects) and set(SCHEMA.names) - set(
        delta.delta(layout.rejects).schema().to_arrow().names)
    since = None if whole else through(layout)
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
    claim = lock.claim_of(layout.root)
    run = claim.run if claim is not None and claim.run else lock.run_id(dt.datetime.now(dt.UTC))
    rows = pa.Table.from_pylist([r for logged in latest.to_dict("records")
                                 for r in _report_rows(layout, logged, run)], schema=SCHEMA)
    reports = sorted({layout.error_report(s, t).name
                      for s, t in zip(latest["source"], latest["_stamp"], strict=True)})
    mark = {THROUGH: json.dumps(log_rows["finished_at"].max().isoformat())}
    crashpoint("rejects.before_commit")
    _replace(layout, rows, None if whole else reports, mark)
    crashpoint("rejects.committed")
    return rows.num_rows


def _replace(layout: Layout, rows: pa.Table, reports: list[str] | None, mark: dict) -> None:
    """One commit: the rows of ``reports`` replaced by ``rows`` (every row, and the table's
    schema, with None), the mark with them."""
    from deltalake import CommitProperties  # on first use: start-up stays light

    path, properties = layout.rejects, CommitProperties(custom_metadata=mark)
    if reports is None or not delta.exists(path):
        delta.write(path, rows, partition_by=["source"], mode="overwrite",
                    schema_mode="overwrite" if delta.exists(path) else None,
                    commit_properties=properties, doing="writing the rejected rows")
        return
    listed = ", ".join("'" + r.replace("'", "''") + "'" for r in reports)
    delta.write(path, rows, mode="overwrite", predicate=f"report IN ({listed})",
                commit_properties=properties, doing="writing the rejected rows")
    # a commit a run adds a file or so per source: put together as the logs' are
    delta.compact(path, delta.delta(path))


class CannotReplay(ValueError):
    """Corrected rows that cannot be made into the delivery they correct (one line)."""


def corrected_delivery(layout: Layout, delivery: str, corrections: Path) -> tuple[str, bytes]:
    """The delivery ``delivery`` (a name in ``archive/``) as it should have come, with the
    rows of ``corrections`` (a file in the delivery's own form: the customer CSV with its
    header, the product JSON array, ``~`` lines) in place of its bad rows of the same key
    (every copy of a key that occurs twice); a correction whose key no bad row has is added;
    a bad row no correction names stays as it was (docs/quality.md, fix and replay). Returns
    the source's name and the bytes. Delivered again under its name, it is a resent file:
    its source is repaired from its date on, and the tables end as if the rows had come
    right."""
    declared, sources = source_of(delivery), of_root(layout.root)
    if declared is None or declared.name not in sources:
        raise CannotReplay(f"{delivery}: not the name of a source's delivery")
    source = sources[declared.name]
    original = layout.archive(source.name) / delivery
    if not original.is_file():
        raise CannotReplay(f"{delivery}: no such delivery in archive/{source.name}/")
    text = source.read(original)
    if text.extra or text.missing or text.malformed:
        raise CannotReplay(f"{delivery}: its columns differ from {source.name}'s declared "
                           f"ones, or a row of it cannot be split into them; correct the file "
                           f"itself and deliver it again")
    form = source.form(delivery)
    try:
        fixes = form.reader(corrections, source.columns)
    except (OSError, ValueError, UnreadableFile) as error:
        raise CannotReplay(f"{corrections}: not {source.name} rows in the form of "
                           f"{delivery} ({error})") from None
    if fixes.malformed:
        raise CannotReplay(f"{corrections}: row {fixes.malformed[0].line} cannot be split "
                           f"into {source.name}'s {len(source.columns)} columns")
    checked = parts.check(source.widened(text.widened), parts.Part(0, text))
    keys = text.rows[source.key]
    bad = pd.Series(False, index=text.rows.index)
    bad.iloc[checked.bad_at] = True
    fixed = fixes.rows.drop_duplicates(source.key, keep="last").set_index(source.key,
                                                                          drop=False)
    clash = sorted(set(keys[~bad]) & set(fixed.index))
    if clash:
        raise CannotReplay(f"{corrections}: {source.key} {clash[0]!r} names a row of "
                           f"{delivery} that was not rejected")
    rows, placed = [], set()
    for key, row, rejected in zip(keys, text.rows.itertuples(index=False, name=None),
                                  bad, strict=True):
        if rejected and key in fixed.index:
            if key not in placed:
                rows.append(tuple(fixed.loc[key, source.columns]))
                placed.add(key)
            continue
        rows.append(row)
    rows += [tuple(r) for k, r in zip(fixed.index, fixed[source.columns].itertuples(
        index=False, name=None), strict=True) if k not in placed]
    return source.name, _written(form.extension,
                                 pd.DataFrame(rows, columns=list(text.rows.columns)))


def _written(extension: str, rows: pd.DataFrame) -> bytes:
    """Rows of text in a delivery's form: a CSV with its header and every field quoted, a
    JSON array of records (an empty field as null), ``~`` lines."""
    if extension == "csv":
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(rows.columns)
        writer.writerows(rows.itertuples(index=False, name=None))
        return out.getvalue().encode("utf-8")
    if extension == "json":
        records = [{c: (v if v != "" else None) for c, v in zip(rows.columns, r, strict=True)}
                   for r in rows.itertuples(index=False, name=None)]
        return json.dumps(records, ensure_ascii=False, indent=1).encode("utf-8")
    return "".join("~".join(r) + "\r\n"
                   for r in rows.itertuples(index=False, name=None)).encode("utf-8")
