"""The run report (docs/quality.md): what a run did, as a page to look at and as JSON.

Each ``run`` writes ``reports/runs/<run-id>.json`` and ``.html`` and rewrites
``reports/index.html``, which links every run's page (the folder listed, no report read). A
page is one self-contained file (inline CSS and SVG, no script, nothing fetched) that reads
on a phone: per source the files, rows in, loaded, rejected and the files quarantined; the
commonest reasons with an example row each (its raw fields, as the error report holds them);
a trend of the last ``WINDOW`` file dates' rows and rejects; freshness (each source's last
date against the latest of any source: the delivery is daily); the schema changes; and a
flag on a day whose rows are far outside the days before it.

What it works on is bounded by the window, not by the lake's age: the ingest log's rows of
the window's dates (from the log the run read already), the schema log's of this run's
files, and the error reports of this run's files.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from minilake.contract.sources import ALL_SOURCES, SOURCES
from minilake.lake import delta, lock, logs, storage
from minilake.lake.layout import Layout
from minilake.load.rejects import report_of
from minilake.load.validate import reasons

WINDOW = 30             # file dates in the trend, and the days a day is compared with
FAR = 3.0               # a day's rows over FAR times the median of the days before, or under
AT_LEAST = 5            # 1/FAR of it, is flagged; only with AT_LEAST days before it
EXAMPLES = 5            # reasons shown per source, each with one example row
LOG_COLUMNS = ["source", "file", "file_date", "status", "event", "rows_read", "rows_loaded",
               "rows_rejected", "finished_at"]


@dataclass
class RunFile:
    """One file's outcome, as a run reports it (``FileOutcome`` of the ingest)."""

    source: str
    file: str
    status: str
    reason: str
    event: str
    note: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int


def _window(layout: Layout, first_run_day: dt.date) -> pd.DataFrame:
    """The ingest log's rows from ``WINDOW`` days before the run's first file date on: per
    source and file, the last row logged applied (a replay logs a file again). The log as
    the run read it (kept in memory while it holds the root: no second read)."""
    first = first_run_day - dt.timedelta(days=WINDOW)
    rows = logs.read_log(layout)[LOG_COLUMNS]
    rows = rows[(rows["status"] == "applied") & (rows["file_date"] >= first)]
    return rows.sort_values("finished_at").drop_duplicates(["source", "file"], keep="last")


def _trend(window: pd.DataFrame, last: dt.date) -> dict:
    """Per source, rows and rejects per file date of the window (None: no file that day)."""
    days = [last - dt.timedelta(days=n) for n in range(WINDOW - 1, -1, -1)]
    out = {}
    for source in SOURCES:
        mine = window[window["source"] == source].groupby("file_date")[
            ["rows_read", "rows_rejected"]].sum()
        out[source] = {"rows": [int(mine.loc[d, "rows_read"]) if d in mine.index else None
                                for d in days],
                       "rejected": [int(mine.loc[d, "rows_rejected"]) if d in mine.index
                                    else None for d in days]}
    return {"days": [d.isoformat() for d in days], "sources": out}


def _anomalies(trend: dict, run_days: dict[str, set[str]]) -> list[dict]:
    """The run's days whose rows are far outside the days before them (``FAR``)."""
    out = []
    for source, series in trend["sources"].items():
        for i, day in enumerate(trend["days"]):
            rows = series["rows"][i]
            if rows is None or day not in run_days.get(source, set()):
                continue
            before = [r for r in series["rows"][:i] if r is not None]
            if len(before) < AT_LEAST:
                continue
            median = statistics.median(before)
            ratio = rows / median if median else float("inf")
            if ratio >= FAR or ratio <= 1 / FAR:
                out.append({"source": source, "day": day, "rows": rows, "median": median,
                            "why": f"{rows} rows, {ratio:.1f}x the median of the "
                                   f"{len(before)} day(s) before ({median:g})"})
    return out


def _reasons_of(layout: Layout, files: list[RunFile]) -> dict[str, list[dict]]:
    """Per source, the commonest reasons in this run's error reports, each with a count and
    the raw fields of its first row (as the report holds them)."""
    out: dict[str, list[dict]] = {}
    for f in files:
        if f.status != "applied" or not f.rows_rejected:
            continue
        source = ALL_SOURCES[f.source]
        found = out.setdefault(source.name, [])
        for row in report_of(layout, source.name, f.file):
            for reason in dict.fromkeys(reasons(row["errors"], source.columns)):
                known = next((r for r in found if r["reason"] == reason), None)
                if known is None:
                    found.append({"reason": reason, "count": 1, "file": f.file, "example": {
                        k: v for k, v in row.items() if k != "errors"}})
                else:
                    known["count"] += 1
    return {s: sorted(r, key=lambda x: (-x["count"], x["reason"]))[:EXAMPLES]
            for s, r in out.items()}


def _schema_changes(layout: Layout, files: list[RunFile]) -> list[dict]:
    names = {(f.source, f.file) for f in files}
    if not names or not delta.exists(layout.schema_log):
        return []
    changes = logs.read_schema_log(layout)
    mine = changes[[(s, f) in names for s, f in zip(changes["source"], changes["file"],
                                                     strict=True)]]
    return [{"source": r.source, "file": r.file, "change": r.change}
            for r in mine.itertuples()]


def build(layout: Layout, started: dt.datetime, finished: dt.datetime,
          files: list[RunFile]) -> dict:
    """The run's report as plain data (what the JSON holds and the page shows); ``files``:
    what the run did with each file (one at least)."""
    run_days: dict[str, set[str]] = {}
    for f in files:
        if f.status == "applied" and f.source in SOURCES:
            run_days.setdefault(f.source, set()).add(
                ALL_SOURCES[f.source].file_date(f.file).isoformat())
    first = min(ALL_SOURCES[f.source].file_date(f.file) for f in files)
    window = _window(layout, first)
    last = {s: d for s, d in window.groupby("source")["file_date"].max().items()
            if s in SOURCES}
    latest = max(last.values(), default=first)
    trend = _trend(window, latest)
    sources = []
    for name in SOURCES:
        mine = [f for f in files if f.source == name]
        behind = (latest - last[name]).days if name in last else None
        sources.append({
            "source": name, "files": len(mine),
            "rows_in": sum(f.rows_read for f in mine),
            "loaded": sum(f.rows_loaded for f in mine),
            "rejected": sum(f.rows_rejected for f in mine),
            "quarantined": sum(1 for f in mine if f.status == "quarantined"),
            "last_date": last[name].isoformat() if name in last else None,
            "days_behind": behind, "fresh": behind is not None and behind <= 1})
    return {"run_id": lock.run_id(started), "started_at": started.isoformat(),
            "finished_at": finished.isoformat(), "latest_date": latest.isoformat(),
            "sources": sources, "files": [vars(f) for f in files],
            "reasons": _reasons_of(layout, files),
            "schema_changes": _schema_changes(layout, files),
            "trend": trend, "anomalies": _anomalies(trend, run_days),
            "log_rows_read": len(window)}


def write(layout: Layout, report: dict) -> Path:
    """The report as ``reports/runs/<run-id>.json`` and ``.html``, and ``reports/index.html``
    linking every run's page, newest first. Returns the page's path."""
    folder = layout.reports / "runs"
    storage.mkdirs(folder)
    name = report["run_id"]
    storage.write_bytes(folder / f"{name}.json",
                        json.dumps(report, indent=1, default=str).encode("utf-8"))
    page = folder / f"{name}.html"
    storage.write_bytes(page, render(report).encode("utf-8"))
    runs = [n.removesuffix(".html") for n in reversed(storage.names(folder, "*.html"))]
    storage.write_bytes(layout.reports / "index.html", _index(runs).encode("utf-8"))
    return page


STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;padding:0 1em 2em;max-width:60em;
line-height:1.4;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;display:block;overflow-x:auto;max-width:100%}
th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#a40000}.ok{color:#1a6e1a}.anomaly{background:#fff3cd;padding:.5em;border-left:4px
solid #e0a800}
code{font-size:.85em;word-break:break-all}svg{width:100%;max-width:40em;height:auto}
.rows{fill:none;stroke:#1f6fb2;stroke-width:2}.rejected{fill:none;stroke:#c0392b;
stroke-width:2;stroke-dasharray:4 3}.point{fill:#1f6fb2}.point.flagged{fill:#e0a800}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _chart(source: str, trend: dict, flagged: set[str]) -> str:
    """A source's rows and rejects per file date of the window, as an inline SVG: a point
    per day with a file (``data-day``, ``data-rows``), a gap where none came."""
    days, series = trend["days"], trend["sources"][source]
    width, height, pad = 600, 160, 20
    top = max((r for r in series["rows"] if r is not None), default=0) or 1
    def x(i: int) -> float:
        return pad + i * (width - 2 * pad) / max(len(days) - 1, 1)
    def y(v: int) -> float:
        return height - pad - v * (height - 2 * pad) / top
    parts = [f'<svg class="trend" data-source="{_e(source)}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{_e(source)}: rows and rejects per day">']
    for key in ("rows", "rejected"):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(series[key])
                          if v is not None)
        parts.append(f'<polyline class="{key}" points="{points}"/>')
    for i, (day, rows) in enumerate(zip(days, series["rows"], strict=True)):
        if rows is not None:
            flag = " flagged" if day in flagged else ""
            parts.append(f'<circle class="point{flag}" data-day="{day}" data-rows="{rows}" '
                         f'data-rejected="{series["rejected"][i]}" cx="{x(i):.1f}" '
                         f'cy="{y(rows):.1f}" r="3"><title>{day}: {rows} rows, '
                         f'{series["rejected"][i]} rejected</title></circle>')
    parts.append(f'<text x="{pad}" y="12" font-size="11">{_e(days[0])} … {_e(days[-1])}, '
                 f'at most {top} rows</text></svg>')
    return "".join(parts)


def render(report: dict) -> str:
    """The run's page: self-contained HTML, every value escaped."""
    out = ['<!doctype html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>minilake run {_e(report['run_id'])}</title><style>{STYLE}</style>",
           "</head><body>", f"<h1>Run {_e(report['run_id'])}</h1>",
           f"<p>Started {_e(report['started_at'])}, finished {_e(report['finished_at'])}; "
           f"the lake's latest file date: {_e(report['latest_date'])}. "
           f'<a href="../index.html">Every run</a></p>']
    for a in report["anomalies"]:
        out.append(f'<p class="anomaly" data-source="{_e(a["source"])}" '
                   f'data-day="{_e(a["day"])}">Unusual volume: {_e(a["source"])} on '
                   f'{_e(a["day"])}: {_e(a["why"])}</p>')
    out.append('<h2>Sources</h2><table id="sources"><tr><th>source</th><th>files</th>'
               "<th>rows in</th><th>loaded</th><th>rejected</th><th>quarantined</th>"
               "<th>last date</th><th>fresh</th></tr>")
    for s in report["sources"]:
        fresh = ("up to date" if s["fresh"] else "no file in the window"
                 if s["days_behind"] is None else f"{s['days_behind']} day(s) behind")
        out.append(
            f'<tr data-source="{_e(s["source"])}"><td>{_e(s["source"])}</td>'
            + "".join(f'<td class="n {c}">{_e(s[k])}</td>' for k, c in (
                ("files", "files"), ("rows_in", "rows-in"), ("loaded", "loaded"),
                ("rejected", "rejected"), ("quarantined", "quarantined")))
            + f'<td class="last-date">{_e(s["last_date"])}</td>'
            f'<td class="fresh {"ok" if s["fresh"] else "bad"}">{_e(fresh)}</td></tr>')
    out.append("</table>")
    flagged = {}
    for a in report["anomalies"]:
        flagged.setdefault(a["source"], set()).add(a["day"])
    out.append(f"<h2>The last {len(report['trend']['days'])} days</h2><p>Rows per file date "
               "(solid) and rows rejected (dashed); a highlighted point is an unusual "
               "volume.</p>")
    for source in report["trend"]["sources"]:
        out.append(f"<h3>{_e(source)}</h3>"
                   + _chart(source, report["trend"], flagged.get(source, set())))
    out.append('<h2>Files</h2><table id="files"><tr><th>file</th><th>outcome</th>'
               "<th>read</th><th>loaded</th><th>rejected</th><th>note</th></tr>")
    for f in report["files"]:
        outcome = f["status"] + (f" ({f['event']})" if f["event"] else "")
        note = f["reason"] or f["note"]
        cls = "bad" if f["status"] == "quarantined" else ""
        out.append(f'<tr data-file="{_e(f["file"])}"><td>{_e(f["source"])}/{_e(f["file"])}'
                   f'</td><td class="{cls}">{_e(outcome)}</td><td class="n">'
                   f'{_e(f["rows_read"])}</td><td class="n">{_e(f["rows_loaded"])}</td>'
                   f'<td class="n">{_e(f["rows_rejected"])}</td><td>{_e(note)}</td></tr>')
    out.append("</table><h2>Why rows were rejected</h2>")
    if not report["reasons"]:
        out.append("<p>No row was rejected.</p>")
    for source, listed in report["reasons"].items():
        out.append(f'<h3>{_e(source)}</h3><table class="reasons" data-source="{_e(source)}">'
                   "<tr><th>reason</th><th>rows</th><th>an example (its raw fields)</th></tr>")
        for r in listed:
            example = json.dumps(r["example"], ensure_ascii=False)
            out.append(f'<tr><td class="reason">{_e(r["reason"])}</td><td class="n count">'
                       f'{_e(r["count"])}</td><td><code>{_e(example)}</code> '
                       f'({_e(r["file"])})</td></tr>')
        out.append("</table>")
    out.append("<h2>Schema changes</h2>")
    out.append("<ul>" + "".join(f"<li>{_e(c['source'])}/{_e(c['file'])}: {_e(c['change'])}"
                                "</li>" for c in report["schema_changes"]) + "</ul>"
               if report["schema_changes"] else "<p>None.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def _index(runs: list[str]) -> str:
    items = "".join(f'<li><a href="runs/{_e(r)}.html">{_e(r)}</a></li>' for r in runs)
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport"'
            ' content="width=device-width, initial-scale=1"><title>minilake runs</title>'
            f"<style>{STYLE}</style></head><body><h1>Runs</h1><p>Newest first; each page "
            f'is one run (docs/quality.md).</p><ul id="runs">{items}</ul></body></html>')
