"""archive/ -> tables/ (SPEC §2, step 2): per file read, validate, report errors, SCD2, log.

A file is applied in one table commit that records the file's sha256; the ingest log row comes
after it. A run killed anywhere in between leaves the table before or after the file, and the
next run finishes the job: it finds the commit in the table's history and only writes the log.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from minilake import tables
from minilake.crashpoints import crashpoint
from minilake.landing import SplitResult, split
from minilake.layout import Layout
from minilake.lock import hold
from minilake.readers import UnreadableFile
from minilake.scd2 import diff
from minilake.sources import SOURCES, Source
from minilake.validate import Validated, validate

log = logging.getLogger(__name__)

MASS_DELETE_SHARE = 0.5


@dataclass
class FileOutcome:
    """What happened to one archived file."""

    source: str
    file: str
    status: str                     # applied | quarantined
    reason: str = ""
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    inserted: int = 0
    updated: int = 0
    expired: int = 0

    def line(self) -> str:
        if self.status == "quarantined":
            return f"{self.source}/{self.file}: quarantined: {self.reason}"
        return (f"{self.source}/{self.file}: {self.rows_read} read, {self.rows_loaded} loaded, "
                f"{self.rows_rejected} rejected; {self.inserted} new, {self.updated} changed, "
                f"{self.expired} expired")


@dataclass
class IngestResult:
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def quarantined(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "quarantined"]

    @property
    def ok(self) -> bool:
        return not self.quarantined

    def lines(self) -> list[str]:
        if not self.files:
            return ["ingest: nothing new in archive/"]
        return [f.line() for f in self.files]


@dataclass
class RunResult:
    split: SplitResult
    ingest: IngestResult

    @property
    def ok(self) -> bool:
        return self.ingest.ok

    def lines(self) -> list[str]:
        return self.split.lines() + self.ingest.lines()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    # Every field quoted: raw values may hold separators, quotes, CR or LF of any kind.
    frame.to_csv(partial, index=False, quoting=csv.QUOTE_ALL)
    crashpoint("ingest.report_written")
    os.replace(partial, path)


def _archived(layout: Layout, source: Source) -> list[Path]:
    """A source's archived files, in file-date order."""
    folder = layout.archive(source.name)
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and source.file_date(p.name)]
    return sorted(files, key=lambda p: (source.file_date(p.name), p.name))


class _Quarantine(Exception):
    pass


def _mass_delete_check(source: Source, current: pd.DataFrame, expired: int,
                       allow: bool) -> None:
    if source.snapshot and not allow and len(current) and expired > MASS_DELETE_SHARE * len(
            current):
        raise _Quarantine(
            f"would expire {expired} of {len(current)} current keys (more than half: a "
            f"truncated export?); run with --allow-mass-delete if this is intended")


def _apply_file(layout: Layout, source: Source, path: Path, sha: str, commits: dict,
                allow_mass_delete: bool) -> tuple[FileOutcome, dict]:
    day = source.file_date(path.name)
    clock = {"started": dt.datetime.now(dt.UTC)}
    t = time.perf_counter()
    try:
        text = source.read(path)
    except UnreadableFile as error:
        raise _Quarantine(str(error)) from None
    if source.snapshot and text.rows_read == 0:
        raise _Quarantine("empty, but a full snapshot was expected")
    clock["read_s"], t = time.perf_counter() - t, time.perf_counter()
    crashpoint("ingest.after_read")
    checked: Validated = validate(source.schema, source.key, text)
    clock["validate_s"], t = time.perf_counter() - t, time.perf_counter()
    outcome = FileOutcome(source.name, path.name, "applied", rows_read=text.rows_read,
                          rows_loaded=checked.good.num_rows,
                          rows_rejected=checked.rows_rejected)
    version = None
    if (path.name, sha) in commits:     # applied by a run that stopped before logging it
        meta = commits[path.name, sha]
        outcome.inserted, outcome.updated, outcome.expired = (
            meta["inserted"], meta["updated"], meta["expired"])
        version = meta["table_version"]
        clock["diff_s"] = 0.0
        _write_atomically(checked.bad, layout.error_report(source.name, _stamp(day)))
    else:
        current = tables.current_versions(layout, source)
        changes = diff(current, checked.good, source.key, snapshot=source.snapshot,
                       bad_keys=checked.bad_keys)
        clock["diff_s"], t = time.perf_counter() - t, time.perf_counter()
        crashpoint("ingest.after_diff")
        _mass_delete_check(source, current, changes.expired, allow_mass_delete)
        outcome.inserted, outcome.updated, outcome.expired = (
            changes.inserted, changes.updated, changes.expired)
        _write_atomically(checked.bad, layout.error_report(source.name, _stamp(day)))
        if not changes.empty:
            provenance = {"source": source.name, "file": path.name, "sha256": sha,
                          "file_date": day.isoformat(), "inserted": changes.inserted,
                          "updated": changes.updated, "expired": changes.expired}
            crashpoint("ingest.before_commit")
            version = tables.apply_changes(layout, source, changes, day, provenance)
            crashpoint("ingest.after_commit")
    clock["commit_s"] = time.perf_counter() - t
    clock["table_version"] = version
    return outcome, clock


def _stamp(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def _log_row(outcome: FileOutcome, day: dt.date, sha: str, clock: dict) -> dict:
    return {"source": outcome.source, "file": outcome.file, "file_date": day, "sha256": sha,
            "status": outcome.status, "reason": outcome.reason,
            "rows_read": outcome.rows_read, "rows_loaded": outcome.rows_loaded,
            "rows_rejected": outcome.rows_rejected, "inserted": outcome.inserted,
            "updated": outcome.updated, "expired": outcome.expired,
            "table_version": clock.get("table_version"),
            "started_at": clock.get("started"), "finished_at": dt.datetime.now(dt.UTC),
            **{k: clock.get(k) for k in ("read_s", "validate_s", "diff_s", "commit_s")}}


def _quarantine(layout: Layout, source: Source, path: Path, reason: str) -> None:
    """Move a file that cannot be applied to quarantine/<source>/, with the reason beside it."""
    folder = layout.quarantine(source.name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{path.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")
    crashpoint("quarantine.after_reason")
    if path.exists():
        os.replace(path, folder / path.name)


def ingest(root: str | Path = ".", *, allow_mass_delete: bool = False,
           progress: bool | None = None) -> IngestResult:
    """Apply every archived file not yet applied, per source in file-date order."""
    layout = Layout.of(root)
    with hold(layout.root, "ingest"):
        return _ingest(layout, allow_mass_delete, progress)


def _ingest(layout: Layout, allow_mass_delete: bool, progress: bool | None) -> IngestResult:
    logged = tables.read_log(layout)
    done = set(zip(logged["file"], logged["sha256"], strict=True))
    quarantined = set(zip(*[logged.loc[logged["status"] == "quarantined", c]
                            for c in ("file", "sha256")], strict=True))
    work = [(s, p) for s in SOURCES.values() for p in _archived(layout, s)]
    result = IngestResult()
    commits: dict[str, dict] = {}
    bar = tqdm(total=len(work), desc="ingest", unit="file",
               disable=None if progress is None else not progress)
    for source, path in work:
        sha = sha256_of(path)
        if (path.name, sha) in quarantined:      # logged, but the move did not happen
            _quarantine(layout, source, path, logged.loc[
                (logged["file"] == path.name) & (logged["sha256"] == sha), "reason"].iloc[-1])
            bar.update()
            continue
        if (path.name, sha) in done:
            bar.update()
            continue
        bar.set_postfix_str(f"{source.name}/{path.name}")
        if source.name not in commits:
            commits[source.name] = tables.applied_commits(layout, source)
        day = source.file_date(path.name)
        try:
            outcome, clock = _apply_file(layout, source, path, sha, commits[source.name],
                                         allow_mass_delete)
            log.info("%s/%s: %s", source.name, path.name, outcome.line())
            tables.append_log(layout, [_log_row(outcome, day, sha, clock)])
            crashpoint("ingest.after_log")
        except _Quarantine as reason:
            outcome = FileOutcome(source.name, path.name, "quarantined", reason=str(reason))
            log.error("%s/%s: quarantined: %s", source.name, path.name, reason)
            tables.append_log(layout, [_log_row(outcome, day, sha,
                                                {"started": dt.datetime.now(dt.UTC)})])
            crashpoint("quarantine.after_log")
            _quarantine(layout, source, path, str(reason))
        result.files.append(outcome)
        bar.update()
    bar.close()
    return result


def run(root: str | Path = ".", *, allow_mass_delete: bool = False,
        progress: bool | None = None) -> RunResult:
    """split, then ingest."""
    with hold(Layout.of(root).root, "run"):
        return RunResult(split(root), ingest(root, allow_mass_delete=allow_mass_delete,
                                             progress=progress))


def status(root: str | Path = ".") -> pd.DataFrame:
    """Per source: files archived / applied / quarantined, last date, rows, rejected rows."""
    layout = Layout.of(root)
    logged = tables.read_log(layout)
    rows = []
    for source in SOURCES.values():
        mine = logged[logged["source"] == source.name]
        applied = mine[mine["status"] == "applied"]
        archived = layout.archive(source.name)
        current, total = tables.row_counts(layout, source)
        rows.append({
            "source": source.name,
            "archived": sum(1 for _ in archived.glob("*")) if archived.is_dir() else 0,
            "applied": len(applied),
            "quarantined": int((mine["status"] == "quarantined").sum()),
            "last_date": applied["file_date"].max() if len(applied) else None,
            "current_rows": current,
            "all_versions": total,
            "rejected_rows": int(applied["rows_rejected"].sum()),
        })
    return pd.DataFrame(rows)
