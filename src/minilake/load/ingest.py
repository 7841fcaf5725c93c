"""archive/ -> tables/ (SPEC §2, step 2): per file read, validate, report errors, SCD2, log.

A file is applied in one table commit that records the file's name and sha256; the ingest log
row comes after it. A run killed anywhere in between leaves the table before or after the file,
and the next run finishes the job: it finds the commit in the table's history and only writes
the log.

History does not depend on arrival order (SPEC §4). A file dated before the last one applied to
its source (a late file), or a file whose name was applied with other content (a resent file),
makes the source be rebuilt: every archived file of the source is replayed, in file-date order
and through the same per-file code, into a scratch table that is then swapped in with a single
overwrite commit.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from tqdm import tqdm

from minilake import stopping
from minilake.apps import unchanged
from minilake.contract.sources import ERASURE_REQUESTS, SOURCES, Source
from minilake.crashpoints import crashpoint
from minilake.formats.readers import UnreadableFile
from minilake.inbound.landing import SplitResult, split, superseded_name
from minilake.lake import history, lock, storage
from minilake.lake.layout import Layout
from minilake.lake.lock import hold
from minilake.load import erasure, parts, tables
from minilake.load.validate import Validated

if TYPE_CHECKING:
    from minilake.load.distributed import Engine

log = logging.getLogger(__name__)

MASS_DELETE_SHARE = 0.5
# Sources are ingested side by side unless a pending file is larger than this: then one at a
# time, so that peak memory is that of one file (and the next one, read ahead), not three.
SIDE_BY_SIDE_UP_TO_BYTES = int(os.environ.get("MINILAKE_SIDE_BY_SIDE_MB", "256")) << 20


@dataclass
class FileOutcome:
    """What happened to one archived file."""

    source: str
    file: str
    status: str                     # applied | quarantined | superseded
    reason: str = ""
    event: str = ""                 # "" | late | resent | rebuild
    note: str = ""
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    inserted: int = 0
    updated: int = 0
    expired: int = 0

    def line(self) -> str:
        where = f"{self.source}/{self.file}"
        if self.status == "quarantined":
            return f"{where}: quarantined: {self.reason}"
        if self.status == "superseded":
            return f"{where}: {self.note}"
        counts = (f"{self.rows_read} read, {self.rows_loaded} loaded, {self.rows_rejected} "
                  f"rejected; {self.inserted} new, {self.updated} changed, {self.expired} "
                  f"expired")
        return f"{where}: {counts}" + (f" ({self.note})" if self.note else "")

    def counts(self) -> dict:
        return {"inserted": self.inserted, "updated": self.updated, "expired": self.expired}


@dataclass
class IngestResult:
    files: list[FileOutcome] = field(default_factory=list)
    history: list[str] = field(default_factory=list)   # what the history steps did (§14)

    @property
    def quarantined(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "quarantined"]

    @property
    def ok(self) -> bool:
        return not self.quarantined

    def lines(self) -> list[str]:
        done = [f.line() for f in self.files] or ["ingest: nothing new in archive/"]
        return done + self.history


@dataclass
class RunResult:
    split: SplitResult
    ingest: IngestResult
    months: list[dt.date] | None = None       # months the run touched (None: every month)
    marts: dict[str, int] = field(default_factory=dict)   # rows written per mart

    @property
    def ok(self) -> bool:
        return self.ingest.ok

    def lines(self) -> list[str]:
        out = self.split.lines() + self.ingest.lines()
        if self.marts:
            months = "every month" if self.months is None else ", ".join(
                m.strftime("%Y-%m") for m in self.months)
            out.append(f"marts: {months} recomputed ("
                       + ", ".join(f"{n}: {r} rows" for n, r in self.marts.items()) + ")")
        return out


@dataclass(frozen=True)
class Delivery:
    """An archived file and its identity."""

    path: Path
    sha256: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name


class Ledger:
    """What the ingest log says about each delivered (file, sha256), latest row first.

    Every lookup is a dict built here, once per run: a pandas filter or ``.loc`` per file made
    a run's overhead grow with history (0.4 s after 60 days at 10x), and the sources' threads
    then share nothing but plain dicts they only read."""

    def __init__(self, log_rows: pd.DataFrame):
        ordered = log_rows.sort_values("finished_at", kind="stable")
        self.latest = ordered.drop_duplicates(["file", "sha256"], keep="last").set_index(
            ["file", "sha256"])
        self._status = dict(zip(self.latest.index, self.latest["status"], strict=True))
        self._reason = dict(zip(self.latest.index, self.latest["reason"], strict=True))
        rows = self.latest[self.latest["status"] == "applied"].reset_index()
        # file -> sha256 of its applied row logged last
        self._applied_sha = dict(zip(rows["file"], rows["sha256"], strict=True))
        # source -> (file date, file) of the last applied file, in replay order
        self._last = {}
        for source, day, name in zip(rows["source"], rows["file_date"], rows["file"],
                                     strict=True):
            self._last[source] = max(self._last.get(source, (day, name)), (day, name))
        # (file, size, mtime_ns) -> sha256 of the latest applied row
        self._trusted = {(name, int(size), int(mtime)): sha for name, sha, size, mtime in zip(
            rows["file"], rows["sha256"], rows["size"], rows["mtime_ns"], strict=True)
            if not (pd.isna(size) or pd.isna(mtime))}

    def status(self, name: str, sha: str) -> str | None:
        return self._status.get((name, sha))

    def reason(self, name: str, sha: str) -> str:
        return self._reason[name, sha]

    def applied_sha(self, name: str) -> str | None:
        return self._applied_sha.get(name)

    def last_applied(self, source: str) -> tuple[dt.date, str] | None:
        """(file date, name) of the source's last applied file in replay order."""
        return self._last.get(source)

    def trusted_sha(self, path: Path, size: int, mtime_ns: int) -> str | None:
        """The sha256 logged for an applied file that has not changed since (same name, size
        and modification time), so that a run does not re-read the whole archive."""
        return self._trusted.get((path.name, size, mtime_ns))


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    with storage.publish(path, "w", encoding="utf-8", newline="") as out:
        # Every field quoted: raw values may hold separators, quotes, CR or LF of any kind.
        frame.to_csv(out, index=False, quoting=csv.QUOTE_ALL)
        crashpoint("ingest.report_written")


def _deliveries(layout: Layout, source: Source, ledger: Ledger) -> list[Delivery]:
    """A source's archived files, in file-date order (regular files only: anything else put
    there is said and left alone, never read)."""
    for path, kind in storage.irregular(layout.archive(source.name)):
        log.warning("%s/%s: a %s, not a regular file; not read", source.name, path.name, kind)
    files = [item for item in storage.listing(layout.archive(source.name))
             if source.file_date(item[0].name)]

    def identify(item: tuple[Path, int, int]) -> Delivery:
        path, size, mtime_ns = item
        sha = ledger.trusted_sha(path, size, mtime_ns) or storage.sha256(path)
        return Delivery(path, sha, size, mtime_ns)

    # New files are hashed side by side: hashlib runs without the GIL, one core per file.
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        out = list(pool.map(identify, files))
    return sorted(out, key=lambda d: (source.file_date(d.name), d.name))


class _Quarantine(Exception):
    pass


def _mass_delete_check(source: Source, current_keys: int, expired: int,
                       allow: bool) -> None:
    if source.snapshot and not allow and current_keys and expired > (
            MASS_DELETE_SHARE * current_keys):
        raise _Quarantine(
            f"would expire {expired} of {current_keys} current keys (more than half: a "
            f"truncated export?); run with --allow-mass-delete if this is intended")


@dataclass
class _Checked:
    """A file read and validated, not yet applied."""

    delivery: Delivery
    rows: Validated
    rows_read: int
    clock: dict


def _check_file(source: Source, delivery: Delivery) -> _Checked:
    """Read and validate one file here (no side effects); raise _Quarantine if it cannot be
    read."""
    clock: dict = {"started": dt.datetime.now(dt.UTC)}
    t = time.perf_counter()
    try:
        text = parts.read(source, delivery.path)
    except UnreadableFile as error:
        raise _Quarantine(str(error)) from None
    clock["read_s"], t = time.perf_counter() - t, time.perf_counter()
    crashpoint("ingest.after_read")
    rows = parts.check(source, parts.Part(0, text))
    rows_read = text.rows_read
    del text                # the file's text is its largest object: let it go before the diff
    clock["validate_s"] = time.perf_counter() - t
    return _Checked(delivery, rows, rows_read, clock)


def _apply_file(layout: Layout, source: Source, delivery: Delivery, table: tables.Opened,
                commits: dict, allow_mass_delete: bool, engine: Engine | None
                ) -> tuple[FileOutcome, dict]:
    """Read, validate, report and apply one file to ``table``, here or (``engine``) on a
    cluster; raise _Quarantine if it cannot be applied. ``commits`` are the files the table's
    history says were applied already."""
    if engine is None:
        return _apply_checked(layout, source, _check_file(source, delivery), table, commits,
                              allow_mass_delete)
    try:
        work, clock = engine.file_work(source, delivery, table)
    except UnreadableFile as error:
        raise _Quarantine(str(error)) from None
    return _settle(layout, source, delivery, table, commits, allow_mass_delete, work, clock)


def _apply_checked(layout: Layout, source: Source, checked: _Checked, table: tables.Opened,
                   commits: dict, allow_mass_delete: bool) -> tuple[FileOutcome, dict]:
    """Compare a file checked here with the current versions, then report and apply it."""
    delivery, clock, rows = checked.delivery, checked.clock, checked.rows
    del checked.rows        # ``rows`` is the only reference left: dropped after the diff
    if (delivery.name, delivery.sha256) in commits:    # applied, not logged: no diff needed
        work = parts.FileWork(checked.rows_read, rows.good.num_rows, rows.bad, 0, 0, 0, 0,
                              empty=True)
        return _settle(layout, source, delivery, table, commits, allow_mass_delete, work,
                       clock)
    t = time.perf_counter()
    files = tables.current_files(table)
    worked = parts.work(source, table.path, parts.Part(0, None), rows, files)
    del rows
    day = source.file_date(delivery.name)
    work = parts.merged(checked.rows_read, [worked], lambda: tables.write_changes(
        table.path, source, worked.changes, day, files))
    clock["diff_s"] = time.perf_counter() - t
    return _settle(layout, source, delivery, table, commits, allow_mass_delete, work, clock)


def _settle(layout: Layout, source: Source, delivery: Delivery, table: tables.Opened,
            commits: dict, allow_mass_delete: bool, work: parts.FileWork,
            clock: dict) -> tuple[FileOutcome, dict]:
    """The driver's part of a file, whichever engine did the work: the mass-delete check, the
    error report, the data files written, then the file's one commit."""
    path, sha = delivery.path, delivery.sha256
    day = source.file_date(path.name)
    t = time.perf_counter()
    outcome = FileOutcome(source.name, path.name, "applied", rows_read=work.rows_read,
                          rows_loaded=work.rows_loaded, rows_rejected=len(work.bad))
    report = layout.error_report(source.name, source.report_stamp(path.name))
    if (path.name, sha) in commits:     # applied by a run that stopped before logging it
        meta = commits[path.name, sha]
        outcome.inserted, outcome.updated, outcome.expired = (
            meta["inserted"], meta["updated"], meta["expired"])
        clock["table_version"], clock["diff_s"] = meta["table_version"], 0.0
        _write_atomically(work.bad, report)
        clock["commit_s"] = time.perf_counter() - t
        return outcome, clock
    crashpoint("ingest.after_diff")
    _mass_delete_check(source, work.current_keys, work.expired, allow_mass_delete)
    outcome.inserted, outcome.updated, outcome.expired = (
        work.inserted, work.updated, work.expired)
    _write_atomically(work.bad, report)
    if not work.empty:
        provenance = {"source": source.name, "file": path.name, "sha256": sha,
                      "file_date": day.isoformat(), **outcome.counts()}
        crashpoint("ingest.before_commit")
        actions = work.write()
        crashpoint("ingest.files_written")
        clock["table_version"] = tables.commit(table, source, actions, provenance)
        crashpoint("ingest.after_commit")
    clock["commit_s"] = time.perf_counter() - t
    return outcome, clock


def _log_row(source: Source, delivery: Delivery, outcome: FileOutcome, clock: dict) -> dict:
    return {"source": outcome.source, "file": outcome.file,
            "file_date": source.file_date(outcome.file), "sha256": delivery.sha256,
            "status": outcome.status, "reason": outcome.reason, "event": outcome.event,
            "note": outcome.note, "size": delivery.size, "mtime_ns": delivery.mtime_ns,
            "rows_read": outcome.rows_read, "rows_loaded": outcome.rows_loaded,
            "rows_rejected": outcome.rows_rejected, **outcome.counts(),
            "table_version": clock.get("table_version"),
            "started_at": clock.get("started", dt.datetime.now(dt.UTC)),
            "finished_at": dt.datetime.now(dt.UTC),
            **{k: clock.get(k) for k in ("read_s", "validate_s", "diff_s", "commit_s")}}


def _quarantine(layout: Layout, ingest_log: tables.IngestLog, source: Source,
                delivery: Delivery, reason: str, event: str = "") -> FileOutcome:
    """Log the file as quarantined, then move it to quarantine/<source>/ with its reason."""
    outcome = FileOutcome(source.name, delivery.name, "quarantined", reason=reason, event=event)
    log.error("%s/%s: quarantined: %s", source.name, delivery.name, reason)
    ingest_log.append([_log_row(source, delivery, outcome, {})])
    crashpoint("quarantine.after_log")
    _move_to_quarantine(layout, source, delivery.path, reason)
    return outcome


def _move_to_quarantine(layout: Layout, source: Source, path: Path, reason: str) -> None:
    folder = layout.quarantine(source.name)
    storage.write_bytes(folder / f"{path.name}.reason.txt", (reason + "\n").encode("utf-8"))
    crashpoint("quarantine.after_reason")
    target = folder / path.name
    if target.exists() and path.exists() and not storage.same_bytes(target, path):
        storage.move(target, superseded_name(target))           # keep what was there
    if path.exists():
        storage.move(path, target)


class _Progress:
    """The progress bar, and the lines of the files whose outcome is final, said as they come
    (``say``) rather than at the end: a scheduler's log shows each file when it is done."""

    def __init__(self, progress: bool | None, say: Callable[[str], None] | None = None):
        self.bar = tqdm(total=0, desc="ingest", unit="file",
                        disable=None if progress is None else not progress)
        self.say = say
        self._lock = threading.Lock()

    def tell(self, outcomes: list[FileOutcome]) -> list[FileOutcome]:
        """Say the lines of ``outcomes`` (final: committed, quarantined); returns them."""
        if self.say is not None:
            with self._lock:
                for outcome in outcomes:
                    if self.bar.disable:
                        self.say(outcome.line())
                    else:
                        self.bar.write(outcome.line())
        return outcomes

    def add(self, n: int) -> None:
        self.bar.total += n
        self.bar.refresh()

    def step(self, source: Source, name: str) -> None:
        self.bar.set_postfix_str(f"{source.name}/{name}", refresh=False)
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def _apply_in_order(layout: Layout, ingest_log: tables.IngestLog, source: Source,
                    pending: list[Delivery], allow_mass_delete: bool, bar: _Progress,
                    read_ahead: bool = False, engine: Engine | None = None
                    ) -> list[FileOutcome]:
    """The usual case: new files dated on or after everything applied, one commit each.

    With ``read_ahead``, the next file is read and validated while this one is compared and
    committed (files are still applied one at a time, in order): for when sources run one
    at a time and a core would otherwise wait."""
    table = tables.Opened(layout.table(source.name))
    commits = tables.applied_commits(table)
    outcomes = []
    with ThreadPoolExecutor(max_workers=1) as ahead:
        checks = (_checks_in_order(source, pending, ahead if read_ahead else None)
                  if engine is None else [None] * len(pending))
        for delivery, check in zip(pending, checks, strict=True):
            _boundary(layout, f"applying {source.name}/{delivery.name}")
            try:
                if check is None:
                    outcome, clock = _apply_file(layout, source, delivery, table, commits,
                                                 allow_mass_delete, engine)
                else:
                    outcome, clock = _apply_checked(layout, source, check(), table, commits,
                                                    allow_mass_delete)
                log.info("%s", outcome.line())
                ingest_log.append([_log_row(source, delivery, outcome, clock)])
                crashpoint("ingest.after_log")
            except _Quarantine as reason:
                outcome = _quarantine(layout, ingest_log, source, delivery, str(reason))
            outcomes += bar.tell([outcome])
            bar.step(source, delivery.name)
    return outcomes


def _boundary(layout: Layout, doing: str) -> None:
    """Where a file begins: stop there if the root is no longer this run's (SPEC §14) or a
    stop was asked for (Ctrl-C, SIGTERM)."""
    stopping.check(doing)
    lock.fence(layout.root, doing)


def _checks_in_order(source: Source, pending: list[Delivery],
                     ahead: ThreadPoolExecutor | None) -> Iterator[Callable[[], _Checked]]:
    """For each pending file, a call that returns it checked (or raises _Quarantine). With
    ``ahead``, the next file's check is started on it when this file's call is taken."""
    if ahead is None:
        for delivery in pending:
            yield lambda delivery=delivery: _check_file(source, delivery)
        return
    upcoming = None
    for i, delivery in enumerate(pending):
        running = upcoming or ahead.submit(_check_file, source, delivery)
        upcoming = (ahead.submit(_check_file, source, pending[i + 1])
                    if i + 1 < len(pending) else None)
        yield running.result


def _rebuild(layout: Layout, ingest_log: tables.IngestLog, source: Source,
             deliveries: list[Delivery], ledger: Ledger, events: dict[str, str], note: str,
             allow_mass_delete: bool, bar: _Progress, engine: Engine | None = None
             ) -> list[FileOutcome]:
    """Replay every archived file of ``source`` into a scratch table, swap it in at once.

    ``events`` names the files that caused the rebuild (file -> late | resent | rebuild)."""
    scratch = layout.root / "tables" / ".rebuild" / source.name
    storage.remove_tree(scratch)
    opened = tables.Opened(scratch)
    bar.add(len(deliveries) - len(events))
    log.warning("%s: rebuilding from %d archived file(s): %s", source.name, len(deliveries),
                note)
    outcomes, logged, replayed = [], [], []
    for delivery in deliveries:
        _boundary(layout, f"replaying {source.name}/{delivery.name} (nothing of the rebuild "
                          f"is applied until its last file)")
        before = ledger.status(delivery.name, delivery.sha256) == "applied"
        event = events.get(delivery.name, "rebuild")
        try:
            outcome, clock = _apply_file(layout, source, delivery, opened, {},
                                         allow_mass_delete or before, engine)
        except _Quarantine as reason:
            outcomes.append(_quarantine(layout, ingest_log, source, delivery, str(reason),
                                        event))
            bar.step(source, delivery.name)
            continue
        outcome.event, outcome.note = event, note
        outcomes.append(outcome)
        logged.append((delivery, outcome, clock))
        replayed.append({"file": delivery.name, "sha256": delivery.sha256, **outcome.counts()})
        bar.step(source, delivery.name)
    crashpoint("rebuild.before_swap")
    version = tables.replace_table(layout.table(source.name), scratch, source,
                                   {"source": source.name, "note": note, "files": replayed})
    crashpoint("rebuild.after_swap")
    rows = [_log_row(source, d, o, {**c, "table_version": version}) for d, o, c in logged]
    for name, event in events.items():
        old = ledger.applied_sha(name)
        if event == "resent" and old is not None:
            gone = FileOutcome(source.name, name, "superseded", event="resent",
                               note="superseded by a resent file of the same name")
            outcomes.append(gone)
            rows.append(_log_row(source, Delivery(layout.archive(source.name) / name, old, 0, 0),
                                 gone, {}))
    ingest_log.append(rows)
    storage.remove_tree(scratch)
    return outcomes


def _pending(layout: Layout, source: Source, deliveries: list[Delivery],
             ledger: Ledger) -> list[Delivery]:
    """Archived files not applied yet (finishing a quarantine a killed run had started)."""
    pending = []
    for delivery in deliveries:
        status = ledger.status(delivery.name, delivery.sha256)
        if status == "applied":
            continue
        if status == "quarantined" and not (layout.quarantine(source.name)
                                            / delivery.name).exists():
            _move_to_quarantine(layout, source, delivery.path,
                                ledger.reason(delivery.name, delivery.sha256))
            continue
        pending.append(delivery)
    return pending


def _one_snapshot_a_day(layout: Layout, ingest_log: tables.IngestLog, source: Source,
                        deliveries: list[Delivery], pending: list[Delivery], ledger: Ledger,
                        bar: _Progress) -> tuple[list[Delivery], list[FileOutcome]]:
    """A snapshot is the whole state of one date: a second delivery of a date in another
    form (customer_D.json beside customer_D.csv) is quarantined, whichever came first having
    been applied (within one run, the first by name). Returns the files to go on with and
    the outcomes of those quarantined."""
    first: dict[dt.date, str] = {}
    for delivery in deliveries:
        if ledger.status(delivery.name, delivery.sha256) == "applied":
            first.setdefault(source.file_date(delivery.name), delivery.name)
    keep, quarantined = [], []
    for delivery in pending:
        day = source.file_date(delivery.name)
        other = first.setdefault(day, delivery.name)
        if other == delivery.name:
            keep.append(delivery)
            continue
        quarantined.append(_quarantine(
            layout, ingest_log, source, delivery, f"a second snapshot for {day.isoformat()}: "
            f"{other} was delivered for that date already"))
        bar.step(source, delivery.name)
    return keep, quarantined


def _ingest_source(layout: Layout, ingest_log: tables.IngestLog, source: Source,
                   ledger: Ledger, allow_mass_delete: bool, bar: _Progress,
                   rebuild: str | None = None, read_ahead: bool = False,
                   erased: frozenset[str] = frozenset(), engine: Engine | None = None
                   ) -> list[FileOutcome]:
    """``erased``: archived files an erasure rewrote (new content, but not resent)."""
    deliveries = _deliveries(layout, source, ledger)
    pending = _pending(layout, source, deliveries, ledger)
    if rebuild is None and not pending:
        return []
    bar.add(len(pending))
    refused: list[FileOutcome] = []
    if source.snapshot:
        pending, refused = _one_snapshot_a_day(layout, ingest_log, source, deliveries,
                                               pending, ledger, bar)
        if rebuild is None and not pending:
            return bar.tell(refused)
    last = ledger.last_applied(source.name)
    events = {}
    for delivery in pending:
        if delivery.name in erased:
            events[delivery.name] = "erasure"
        elif ledger.applied_sha(delivery.name) not in (None, delivery.sha256):
            events[delivery.name] = "resent"
        elif last is not None and (source.file_date(delivery.name), delivery.name) < last:
            # before the last applied file in replay order: an earlier date, or the same
            # date in a form that sorts first (sales_D.json after sales_D.txt)
            events[delivery.name] = "late"
    bar.tell(refused)
    if rebuild is None and not events:
        return refused + _apply_in_order(layout, ingest_log, source, pending,
                                         allow_mass_delete, bar, read_ahead, engine)
    why = [f"{kind} file {name}" for name, kind in events.items()]
    note = rebuild or ("rebuilt for " + ", ".join(why))
    events |= {d.name: "rebuild" for d in pending if d.name not in events}
    replay = [d for d in deliveries
              if d.name in events or ledger.status(d.name, d.sha256) == "applied"]
    return refused + bar.tell(_rebuild(layout, ingest_log, source, replay, ledger, events,
                                       note, allow_mass_delete, bar, engine))


# --- erasure requests (SPEC §9) ----------------------------------------------------------------

def _erase_requests(layout: Layout, ingest_log: tables.IngestLog, ledger: Ledger,
                    allow_mass_delete: bool, bar: _Progress, engine: Engine | None = None
                    ) -> list[FileOutcome]:
    """Apply pending erasure request files in file-date order (finishing one a killed run
    started), each ending with the customer table rebuilt from the rewritten archive."""
    source = ERASURE_REQUESTS
    pending = _pending(layout, source, _deliveries(layout, source, ledger), ledger)
    staged = layout.root / "tables" / ".erasure"
    for folder in sorted({p.relative_to(staged).parts[0] for p in storage.tree(staged)}):
        if not (layout.archive(source.name) / folder).exists() or \
                folder not in {d.name for d in pending}:
            storage.remove_tree(staged / folder)   # its request was logged applied: done
    outcomes = []
    bar.add(len(pending))
    for delivery in pending:
        stopping.check(f"applying {source.name}/{delivery.name}")
        outcomes += _erase_one(layout, ingest_log, delivery, allow_mass_delete, bar, engine)
        bar.step(source, delivery.name)
    return outcomes


def _erase_one(layout: Layout, ingest_log: tables.IngestLog, delivery: Delivery,
               allow_mass_delete: bool, bar: _Progress, engine: Engine | None = None
               ) -> list[FileOutcome]:
    source, name = ERASURE_REQUESTS, delivery.name
    logged = tables.read_erasure_log(layout)
    logged = logged[logged["request_file"] == name]
    plan = erasure.manifest(layout, name)
    if plan is None and not len(logged):
        try:
            checked = _check_file(source, delivery)
        except _Quarantine as reason:
            return bar.tell([_quarantine(layout, ingest_log, source, delivery, str(reason))])
        good = checked.rows.good
        ids = {int(i) for i in good.column("customer_id").drop_null().to_pylist()}
        emails = {e for e in good.column("email").to_pylist() if e}
        plan = erasure.plan(layout, name, ids, emails)
        crashpoint("erasure.planned")
    outcomes = []
    if plan is not None and not len(logged) and not plan.anyone:
        # nobody it names is known: nothing to rewrite, rebuild or purge (the ids are
        # logged all the same, so that a later delivery of them is stored erased)
        log.warning("erasure %s: nobody it names is known under the root; nothing changed",
                    name)
        _log_erasure(layout, plan, None)
        crashpoint("erasure.logged")
    elif plan is not None and not len(logged):
        erasure.put_in_place(layout, plan)
        ids = set(plan.ids)
        said = erasure.scrub_outputs(layout, ids, erasure.personal_values(layout, ids))
        for line in said:
            log.warning("erasure %s: %s", name, line)
        crashpoint("erasure.outputs_scrubbed")
        note = f"erasure requested by {name}"
        customer = layout.table("customer")
        # A killed run may have rebuilt the table and logged its files already: its commit
        # says so (the purge keeps it: history then starts there), and nothing is pending.
        ledger = Ledger(tables.read_log(layout))
        pending = _pending(layout, SOURCES["customer"],
                           _deliveries(layout, SOURCES["customer"], ledger), ledger)
        if tables.exists(customer) and (pending or note not in set(
                tables.versions(customer)["note"])):
            outcomes += _ingest_source(layout, ingest_log, SOURCES["customer"], ledger,
                                       allow_mass_delete, bar, rebuild=note,
                                       erased=frozenset(plan.archived()), engine=engine)
        crashpoint("erasure.rebuilt")
        kept = erasure.purge_history(customer) if tables.exists(customer) else None
        crashpoint("erasure.purged")
        # the marts hold names: recomputed from the erased tables, their history purged
        from minilake.outbound import marts as datamarts

        datamarts.refresh(layout.root)
        for mart in datamarts.MARTS + datamarts.KEPT:
            if tables.exists(layout.table("marts") / mart):
                erasure.purge_history(layout.table("marts") / mart)
        crashpoint("erasure.marts_purged")
        _log_erasure(layout, plan, kept)
        crashpoint("erasure.logged")
    resolved = {e: set(found) for e, found in plan.resolved.items()} if plan else {}
    text = delivery.path.read_text(encoding="utf-8-sig")
    rewritten = erasure.rewrite_request(text, resolved)
    if rewritten != text:
        storage.write_bytes(delivery.path, rewritten.encode("utf-8"))
        crashpoint("erasure.request_rewritten")
    final = Delivery(delivery.path, storage.sha256(delivery.path), *storage.stat(delivery.path))
    try:
        checked = _check_file(source, final)
    except _Quarantine as reason:         # cannot happen to a file that read before
        return outcomes + bar.tell([_quarantine(layout, ingest_log, source, final,
                                                str(reason))])
    outcome = FileOutcome(source.name, name, "applied", rows_read=checked.rows_read,
                          rows_loaded=checked.rows.good.num_rows,
                          rows_rejected=checked.rows.rows_rejected,
                          note=_erased_note(plan))
    _write_atomically(checked.rows.bad, layout.error_report(source.name,
                                                            source.report_stamp(name)))
    ingest_log.append([_log_row(source, final, outcome, checked.clock)])
    crashpoint("erasure.request_logged")
    storage.remove_tree(erasure.staging(layout, name))
    return outcomes + bar.tell([outcome])


def _log_erasure(layout: Layout, plan: erasure.Plan, kept: int | None) -> None:
    """The request's rows of the erasure log: each id it named (and found, or not), each
    email that named nobody; ids and counts only, never personal data (SPEC §9)."""
    now = dt.datetime.now(dt.UTC)
    found = set(plan.found)
    rows = [{"request_file": plan.request, "customer_id": i,
             "named_by": plan.how.get(str(i), "") + ("" if i in found else " (not found)"),
             "versions_rewritten": plan.versions.get(str(i), 0),
             "files_rewritten": len(plan.files) if i in found else 0,
             "history_from_version": kept, "erased_at": now} for i in plan.ids]
    rows += [{"request_file": plan.request, "customer_id": None, "named_by": "email (no match)",
              "versions_rewritten": 0, "files_rewritten": 0, "history_from_version": kept,
              "erased_at": now}] * plan.unmatched
    tables.append_erasure_log(layout, rows)


def _erased_note(plan: erasure.Plan | None) -> str:
    """What a request did, for its line: how many customers it erased, and whom it named
    that the root does not hold."""
    if plan is None:
        return "0 customer(s) erased"
    unknown = len(plan.ids) - len(plan.found) + plan.unmatched
    note = f"{len(plan.found)} customer(s) erased"
    if unknown:
        note += f"; {unknown} named nobody known"
    return note + ("" if plan.anyone else "; nothing changed")


def _scrub_later_deliveries(layout: Layout, ledger: Ledger) -> None:
    """Customer files not applied yet lose the rows of customers erased before (SPEC §9)."""
    erased = tables.read_erasure_log(layout)["customer_id"].dropna()
    if not len(erased):
        return
    ids = {int(i) for i in erased}
    for delivery in _pending(layout, SOURCES["customer"],
                             _deliveries(layout, SOURCES["customer"], ledger), ledger):
        new = erasure.scrub_file(delivery.path, ids)
        if new is not None:
            storage.write_bytes(delivery.path, new)
            log.warning("customer/%s: rows of erased customers erased before it is applied",
                        delivery.name)


Say = Callable[[str], None]


def _quiet(line: str) -> None:
    """What a caller that asks for no lines as they come gets: ``result.lines()`` at the end."""


def ingest(root: str | Path = ".", *, allow_mass_delete: bool = False,
           progress: bool | None = None, engine: str = "local", cluster: str | None = None,
           ranges: int | None = None, say: Say | None = None) -> IngestResult:
    """Apply every archived file not yet applied, per source in file-date order; erasure
    requests first (each rewrites the raw customer files and rebuilds the customer table).

    ``engine="dask"`` runs each file's work on a Dask cluster (SPEC §13): the scheduler at
    ``cluster`` (``tcp://host:8786``), else a LocalCluster on this machine; ``ranges`` key
    ranges per file (default: the cluster's threads). ``say`` is given each line of
    ``result.lines()`` as soon as what it says is done."""
    layout = Layout.of(root)
    say = say or _quiet
    with hold(layout.root, "ingest"), _engine(engine, cluster, ranges) as running:
        result = _ingest(layout, allow_mass_delete, progress, running, say)
        result.history += _said(say, history.enforce(layout))
        return result


def _said(say: Say, lines: list[str]) -> list[str]:
    for line in lines:
        say(line)
    return lines


@contextlib.contextmanager
def _engine(name: str, cluster: str | None, ranges: int | None) -> Iterator[Engine | None]:
    """The engine a run asked for: None for the local one, else a Dask client (and its
    LocalCluster), closed when the run ends."""
    if name == "local":
        if cluster is not None or ranges is not None:
            raise ValueError("--cluster and --ranges are for --engine dask")
        yield None
        return
    if name != "dask":
        raise ValueError(f"no engine {name!r}; engines: local, dask")
    from minilake.load.distributed import Engine

    with Engine(cluster, ranges) as running:
        yield running


def _ingest(layout: Layout, allow_mass_delete: bool, progress: bool | None,
            engine: Engine | None, say: Say = _quiet) -> IngestResult:
    brought = _said(say, history.bring_to_policy(layout))
    ledger, ingest_log = Ledger(tables.read_log(layout)), tables.IngestLog(layout)
    bar = _Progress(progress, say)
    erased = _erase_requests(layout, ingest_log, ledger, allow_mass_delete, bar, engine)
    if erased:
        ledger = Ledger(tables.read_log(layout))
    _scrub_later_deliveries(layout, ledger)
    # Sources are independent tables: ingest them side by side (the heavy parts, Arrow
    # compute and delta-rs, run without the GIL); each keeps its own file order. Large
    # files go one source at a time, each reading its next file while it commits one.
    largest = max((size for s in SOURCES.values()
                   for _, size, _ in storage.listing(layout.archive(s.name))), default=0)
    side_by_side = largest <= SIDE_BY_SIDE_UP_TO_BYTES
    with ThreadPoolExecutor(max_workers=len(SOURCES) if side_by_side else 1) as pool:
        per_source = list(pool.map(
            lambda s: _ingest_source(layout, ingest_log, s, ledger, allow_mass_delete,
                                     bar, read_ahead=not side_by_side, engine=engine),
            SOURCES.values()))
    bar.close()
    files = erased + [f for files in per_source for f in files]
    if not files:
        say("ingest: nothing new in archive/")
    return IngestResult(files, brought)


def rebuild(source: str | None = None, root: str | Path = ".", *,
            allow_mass_delete: bool = False, progress: bool | None = None,
            say: Say | None = None) -> IngestResult:
    """Replay ``archive/`` into fresh tables (one source, or all) and swap them in atomically:
    a reader sees the old table or the new one, never a mix."""
    layout = Layout.of(root)
    if source is not None and source not in SOURCES:
        raise ValueError(f"no source {source!r}; sources: {', '.join(SOURCES)}")
    say = say or _quiet
    with hold(layout.root, "rebuild"):
        result = IngestResult(history=_said(say, history.bring_to_policy(layout)))
        ledger, ingest_log = Ledger(tables.read_log(layout)), tables.IngestLog(layout)
        bar = _Progress(progress, say)
        for name in [source] if source else list(SOURCES):
            result.files += _ingest_source(layout, ingest_log, SOURCES[name], ledger,
                                           allow_mass_delete, bar, rebuild="rebuild requested")
        bar.close()
        return result


def vacuum(root: str | Path = ".", *, dry_run: bool = False) -> dict[str, list[str]]:
    """Remove the data files no table version refers to (per table, the files removed, or
    with ``dry_run`` those that would be): what a run killed between writing a file's data
    files and its commit left, or a Dask worker lost mid-write (SPEC §13). Every version's
    files stay, so time travel is untouched."""
    from minilake.outbound import marts as datamarts

    layout = Layout.of(root)
    with hold(layout.root, "vacuum"):
        paths = {name: layout.table(name) for name in SOURCES}
        paths |= {f"marts/{m}": layout.table("marts") / m
                  for m in datamarts.MARTS + datamarts.KEPT}
        return {name: tables.remove_orphans(path, dry_run) for name, path in paths.items()
                if tables.exists(path)}


def run(root: str | Path = ".", *, allow_mass_delete: bool = False,
        progress: bool | None = None, marts: bool = True, engine: str = "local",
        cluster: str | None = None, ranges: int | None = None,
        say: Say | None = None) -> RunResult:
    """split, ingest, then bring the marts up to the files applied since they were last
    refreshed (``marts=False`` leaves that to the caller: ``result.months`` says which months
    those files touched). ``say`` is given each line of ``result.lines()`` as soon as what it
    says is done."""
    from minilake.outbound import marts as datamarts

    layout = Layout.of(root)
    say = say or _quiet
    # the engine first: a cluster that cannot be reached stops the run before any file moves
    with hold(layout.root, "run"), _engine(engine, cluster, ranges) as running:
        moved = split(root)
        _said(say, moved.lines())
        with hold(layout.root, "ingest"):
            result = RunResult(moved, _ingest(layout, allow_mass_delete, progress, running,
                                              say))
        if marts:
            import pyarrow as pa

            stopping.check("bringing the marts up to date (the next run does it)")
            pa.default_memory_pool().release_unused()   # the ingest's buffers, before the marts
            result.months, result.marts = datamarts.catch_up(layout.root)
            if result.marts:
                say(result.lines()[-1])
        else:
            result.months = datamarts.touched_months(layout)
        result.ingest.history += _said(say, history.enforce(layout))
        if storage.is_local(layout.root) and (marts or result.months == []):
            unchanged.remember(Path(layout.root))     # the next run with nothing to do: 0.1 s
        return result


def status(root: str | Path = ".") -> pd.DataFrame:
    """Per source: files archived / applied / quarantined / superseded, late and resent files,
    rebuilds, last applied date, rows, rejected rows; table versions kept, and gone (with
    why: the history policy, an erasure)."""
    layout = Layout.of(root)
    ledger = Ledger(tables.read_log(layout))
    rows = []
    for source in SOURCES.values():
        mine = ledger.latest[ledger.latest["source"] == source.name]
        applied = mine[mine["status"] == "applied"].reset_index()
        # a file an erasure rewrote has a row per content: count its latest
        applied = applied.sort_values("finished_at", kind="stable").drop_duplicates(
            "file", keep="last")
        archived = layout.archive(source.name)
        current, total = tables.row_counts(layout.table(source.name))
        commits = tables.versions(layout.table(source.name))
        rows.append({
            "source": source.name,
            "archived": sum(1 for p in storage.files(archived) if source.file_date(p.name)),
            "applied": len(applied),
            "quarantined": int((mine["status"] == "quarantined").sum()),
            "superseded": int((mine["status"] == "superseded").sum()),
            "late": int((mine["event"] == "late").sum()),
            "resent": int(((mine["event"] == "resent") & (mine["status"] == "applied")).sum()),
            "rebuilds": int((commits["operation"] == "REBUILD").sum()),
            "last_date": applied["file_date"].max() if len(applied) else None,
            "current_rows": current,
            "all_versions": total,
            "rejected_rows": int(applied["rows_rejected"].sum()),
            **history.table_history(layout, source.name),
        })
    return pd.DataFrame(rows)


def erasures(root: str | Path = ".") -> pd.DataFrame:
    """One row per applied erasure request (SPEC §9): customers named and found, table
    versions and files rewritten, the first table version kept, when."""
    log_rows = tables.read_erasure_log(Layout.of(root))
    columns = ["request_file", "customers", "found", "versions_rewritten", "files_rewritten",
               "history_from_version", "erased_at"]
    if not len(log_rows):
        return pd.DataFrame(columns=columns)
    by = log_rows.groupby("request_file", sort=False)
    return pd.DataFrame({
        "customers": by["customer_id"].count(),
        "found": by["versions_rewritten"].apply(lambda v: int((v > 0).sum())),
        "versions_rewritten": by["versions_rewritten"].sum(),
        "files_rewritten": by["files_rewritten"].max(),
        "history_from_version": by["history_from_version"].max(),
        "erased_at": by["erased_at"].max(),
    }).reset_index()[columns]


def versions(source: str, root: str | Path = ".") -> pd.DataFrame:
    """Each version of a source's table and the file(s) it came from."""
    if source not in SOURCES:
        raise ValueError(f"no source {source!r}; sources: {', '.join(SOURCES)}")
    return history.versions(Layout.of(root), source)
