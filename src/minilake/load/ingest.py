"""archive/ -> tables/ (docs/architecture.md, step 3): per file read, validate, report errors,
SCD2, log.

A file is applied in one table commit that records the file's name and sha256; the ingest log
row comes after it. A run killed anywhere in between leaves the table before or after the file,
and the next run finishes the job: it finds the commit in the table's history and only writes
the log.

History does not depend on arrival order (docs/formats.md). A file dated before the last one
applied to its source (a late file), or a file whose name was applied with other content (a
resent file), makes the source be repaired from that file's date on (docs/history.md): the
table as the earlier deliveries left it is staged from the files that changed since, the
deliveries from that date on are replayed through the same per-file code, and the result is
one commit. An erasure repairs the customer table the same way, from the first file that held
the person. A rebuild (on demand) replays every archived file into a scratch table swapped in
with a single overwrite commit.

Longer than most because a source's files are one story, applied in order or replayed, told
with one set of helpers (the archived deliveries, a file's check, its settlement and commit,
its log row, the quarantine).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from tqdm import tqdm

from minilake import stopping
from minilake.contract import drift
from minilake.contract.sources import Source, of_root
from minilake.crashpoints import crashpoint
from minilake.formats import readers
from minilake.formats.readers import UnreadableFile
from minilake.lake import delta, files, lock, logs, storage
from minilake.lake.layout import Layout
from minilake.lake.logs import Ledger
from minilake.load import datafiles, parts, validate
from minilake.load.validate import Validated

if TYPE_CHECKING:
    from minilake.load.distributed import Engine

log = logging.getLogger(__name__)

MASS_DELETE_SHARE = 0.5
# Sources are ingested side by side unless a pending file is larger than this: then one at a
# time, so that peak memory is that of one file (and the next one, read ahead), not three. By
# default a sixteenth of the machine's memory: side by side, a 1000x day with a 1.26 GB
# customer file peaked at 4.8 GB (under four times its largest file, benchmarks/README.md), so
# a run stays under a quarter of the memory; 24 GB here takes 1000x side by side, 0.95x a
# DuckDB peer's SCD2 time against 1.29x one source at a time (issue 38).
SIDE_BY_SIDE_UP_TO_BYTES = (int(os.environ["MINILAKE_SIDE_BY_SIDE_MB"]) << 20
                            if "MINILAKE_SIDE_BY_SIDE_MB" in os.environ
                            else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 16)
# How often the main thread wakes while the sources are ingested, to hear a stop request.
WAKE_SECONDS = 0.2


@dataclass
class FileOutcome:
    """What happened to one archived file."""

    source: str
    file: str
    status: str                     # applied | quarantined | superseded
    reason: str = ""
    event: str = ""                 # "" | late | resent | replay | rebuild | erasure
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
    history: list[str] = field(default_factory=list)   # the history steps (docs/history.md)

    @property
    def quarantined(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "quarantined"]

    @property
    def ok(self) -> bool:
        return not self.quarantined

    def lines(self) -> list[str]:
        done = [f.line() for f in self.files] or ["ingest: nothing new in archive/"]
        return done + self.history


@dataclass(frozen=True)
class Delivery:
    """An archived file (``name`` in ``folder``) and its identity. Its path is made when
    first asked for: a run lists every archived file, and reads few of them."""

    folder: Path
    name: str
    sha256: str
    size: int
    mtime_ns: int

    @functools.cached_property
    def path(self) -> Path:
        return self.folder / self.name

    @classmethod
    def at(cls, path: Path, content: bytes | None = None) -> Delivery:
        """The file at ``path`` as it is now (one it has just rewritten, say); ``content``:
        its bytes, when the caller has just written them (hashed here, not read again)."""
        sha = storage.sha256(path) if content is None else hashlib.sha256(content).hexdigest()
        return cls(path.parent, path.name, sha, *storage.stat(path))


def write_report(frame: pd.DataFrame, path: Path) -> None:
    with storage.publish(path, "w", encoding="utf-8", newline="") as out:
        # Every field quoted: raw values may hold separators, quotes, CR or LF of any kind.
        frame.to_csv(out, index=False, quoting=csv.QUOTE_ALL)
        crashpoint("ingest.report_written")


def archived(layout: Layout, source: Source, ledger: Ledger) -> list[Delivery]:
    """A source's archived files, in file-date order (regular files only: anything else put
    there is said and left alone, never read)."""
    return archived_of(layout, [source], ledger)[source.name]


def archived_of(layout: Layout, sources: list[Source], ledger: Ledger
                ) -> dict[str, list[Delivery]]:
    """:func:`archived` for each of ``sources``: each archive folder listed once, and the
    files the ledger does not know (new, or changed since) hashed side by side, whatever
    source they are of (hashlib runs without the GIL, one core per file)."""
    known: dict[str, list[tuple[dt.date, Delivery]]] = {}
    new: list[tuple[str, dt.date, Path, str, int, int]] = []
    for source in sources:
        folder = layout.archive(source.name)
        listed, odd = storage.entries(folder, keep=True)     # for the run state
        for name, kind in odd:
            log.warning("%s/%s: a %s, not a regular file; not read", source.name, name, kind)
        mine = known.setdefault(source.name, [])
        for name, size, mtime_ns in listed:
            # a file applied and unchanged since: its date as logged (3,300 names parsed a
            # run after three years, else)
            trusted = ledger.trusted(name, size, mtime_ns)
            if (trusted and trusted[0] and trusted[1] == source.name
                    and source.pattern.fullmatch(name)):      # a name the source owns today
                mine.append((trusted[2], Delivery(folder, name, trusted[0], size, mtime_ns)))
                continue
            day = source.file_date(name)
            if day is not None:
                new.append((source.name, day, folder, name, size, mtime_ns))

    def identify(item: tuple[str, dt.date, Path, str, int, int]
                 ) -> tuple[str, dt.date, Delivery]:
        source, day, folder, name, size, mtime_ns = item
        return source, day, Delivery(folder, name, storage.sha256(folder / name), size,
                                     mtime_ns)

    if new:
        with ThreadPoolExecutor(max_workers=min(len(new), os.cpu_count() or 1)) as pool:
            for name, day, delivery in pool.map(identify, new):
                known[name].append((day, delivery))
    return {name: [d for _, d in sorted(found, key=lambda item: (item[0], item[1].name))]
            for name, found in known.items()}


class Quarantined(Exception):
    pass


def _budget_check(source: Source, rejected: int, read: int, bad: pd.DataFrame) -> str | None:
    """A file over its source's budget of rejected rows (docs/quality.md): Quarantined with
    the counts and the commonest reason when the contract fails it; the words to say when it
    only warns; None within it."""
    over = source.contract.over(rejected, read)
    if over is None:
        return None
    commonest = validate.reason_counts(bad["errors"], source.columns).most_common(1)
    over += "".join(f"; most often {r!r} ({n})" for r, n in commonest)
    if source.contract.over_budget == "fail":
        raise Quarantined(f"{over}: nothing of it applied")
    return over


def _mass_delete_check(source: Source, current_keys: int, expired: int,
                       allow: bool) -> None:
    if source.snapshot and not allow and current_keys and expired > (
            MASS_DELETE_SHARE * current_keys):
        raise Quarantined(
            f"would expire {expired} of {current_keys} current keys (more than half: a "
            f"truncated export?); run with --allow-mass-delete if this is intended")


@dataclass
class _Checked:
    """A file read and validated, not yet applied."""

    delivery: Delivery
    rows: Validated
    rows_read: int
    clock: dict
    changes: list[str] = field(default_factory=list)     # its columns, settled
    extra: list[str] = field(default_factory=list)       # the columns beyond them it keeps
    widened: dict[str, str] = field(default_factory=dict)   # the columns it needs wider


def check_file(source: Source, delivery: Delivery) -> _Checked:
    """Read and validate one file here (no side effects); raise Quarantined if it cannot be
    read."""
    clock: dict = {"started": dt.datetime.now(dt.UTC)}
    t = time.perf_counter()
    try:
        text = parts.read(source, delivery.path)
    except UnreadableFile as error:
        raise Quarantined(str(error)) from None
    clock["read_s"], t = time.perf_counter() - t, time.perf_counter()
    crashpoint("ingest.after_read")
    rows = parts.check(source.widened(text.widened), parts.Part(0, text))
    rows_read, changes, extra = text.rows_read, text.changes, list(text.extra)
    widened = text.widened
    del text                # the file's text is its largest object: let it go before the diff
    clock["validate_s"] = time.perf_counter() - t
    return _Checked(delivery, rows, rows_read, clock, changes, extra, widened)


Table = delta.Opened | datafiles.Staged


def _apply_file(layout: Layout, source: Source, delivery: Delivery, table: Table,
                commits: dict, allow_mass_delete: bool, engine: Engine | None
                ) -> tuple[FileOutcome, dict]:
    """Read, validate, report and apply one file to ``table``, here or (``engine``) on a
    cluster; raise Quarantined if it cannot be applied. ``commits`` are the files the table's
    history says were applied already. A repair's staged table is worked on here."""
    if engine is None or isinstance(table, datafiles.Staged):
        return _apply_checked(layout, source, check_file(source, delivery), table, commits,
                              allow_mass_delete)
    try:
        work, clock = engine.file_work(source, delivery, table)
    except (UnreadableFile, datafiles.Unwidenable) as error:
        raise Quarantined(str(error)) from None
    return _settle(layout, source.widened(work.kinds), delivery, table, commits,
                   allow_mass_delete, work, clock)


def _apply_checked(layout: Layout, source: Source, checked: _Checked, table: Table,
                   commits: dict, allow_mass_delete: bool) -> tuple[FileOutcome, dict]:
    """Compare a file checked here with the current versions, then report and apply it."""
    delivery, clock, rows = checked.delivery, checked.clock, checked.rows
    del checked.rows        # ``rows`` is the only reference left: dropped after the diff
    if (delivery.name, delivery.sha256) in commits:    # applied, not logged: no diff needed
        work = parts.FileWork(checked.rows_read, rows.good.num_rows, rows.bad, 0, 0, 0, 0,
                              empty=True, changes=checked.changes, extra=checked.extra)
        return _settle(layout, source, delivery, table, commits, allow_mass_delete, work,
                       clock)
    t = time.perf_counter()
    _budget_check(source, len(rows.bad), checked.rows_read, rows.bad)   # before any widening
    try:
        kinds, widened = datafiles.widen_for(table, source, checked.widened, delivery.name,
                                             delivery.sha256)
    except datafiles.Unwidenable as error:
        raise Quarantined(str(error)) from None
    source = source.widened(kinds)
    files = datafiles.current_files(table, source)
    worked = parts.work(source, table.path, parts.Part(0, None), rows, files,
                        datafiles.added_columns(table, source))
    del rows
    day = source.file_date(delivery.name)
    work = parts.merged(checked.rows_read, [worked], lambda: datafiles.write_changes(
        table.path, source, worked.changes, day, files), [*checked.changes, *widened],
        checked.extra)
    clock["diff_s"] = time.perf_counter() - t
    return _settle(layout, source, delivery, table, commits, allow_mass_delete, work, clock)


def _settle(layout: Layout, source: Source, delivery: Delivery, table: Table,
            commits: dict, allow_mass_delete: bool, work: parts.FileWork,
            clock: dict) -> tuple[FileOutcome, dict]:
    """The driver's part of a file, whichever engine did the work: the mass-delete check, the
    error report, the data files written, then the file's one commit (staged, in a repair)."""
    path, sha = delivery.path, delivery.sha256
    day = source.file_date(path.name)
    t = time.perf_counter()
    meta = commits.get((path.name, sha))     # applied by a run that stopped before logging it
    if meta is not None and "changes" in meta:
        # its column changes as they were then: the table may have gained columns since
        added, changes = [], meta["changes"]
    else:
        added, changes = _columns(source, delivery, table, work)
    in_place = work.in_place if meta is None else meta.get("in_place", 0)
    outcome = FileOutcome(source.name, path.name, "applied", rows_read=work.rows_read,
                          rows_loaded=work.rows_loaded, rows_rejected=len(work.bad),
                          note="; ".join([*changes, *([IN_PLACE.format(in_place)]
                                                     if in_place else [])]))
    report = layout.error_report(source.name, source.report_stamp(path.name))
    if meta is not None:
        outcome.inserted, outcome.updated, outcome.expired = (
            meta["inserted"], meta["updated"], meta["expired"])
        clock["table_version"], clock["diff_s"] = meta["table_version"], 0.0
        write_report(work.bad, report)
        _log_changes(layout, source, delivery, changes)
        clock["commit_s"] = time.perf_counter() - t
        return outcome, clock
    crashpoint("ingest.after_diff")
    over = _budget_check(source, len(work.bad), work.rows_read, work.bad)
    if over:
        log.warning("%s/%s: %s", source.name, path.name, over)
        outcome.note = "; ".join(n for n in (outcome.note, over) if n)
    _mass_delete_check(source, work.current_keys, work.expired, allow_mass_delete)
    outcome.inserted, outcome.updated, outcome.expired = (
        work.inserted, work.updated, work.expired)
    write_report(work.bad, report)
    provenance = {"source": source.name, "file": path.name, "sha256": sha,
                  "file_date": day.isoformat(), **outcome.counts(), "changes": changes,
                  **({"in_place": in_place} if in_place else {})}
    if not work.empty:
        crashpoint("ingest.before_commit")
        actions = work.write()
        crashpoint("ingest.files_written")
        if isinstance(table, datafiles.Staged):
            table.stage(actions, added)
        else:
            clock["table_version"] = datafiles.commit(table, source, actions, provenance,
                                                      added)
            crashpoint("ingest.after_commit")
    elif isinstance(table, datafiles.Staged):
        table.stage([], added)
    elif table.table() is not None:     # a column added, no version changed (all empty)
        datafiles.add_columns(table, source, added, provenance)
    _log_changes(layout, source, delivery, changes)
    clock["commit_s"] = time.perf_counter() - t
    return outcome, clock


IN_PLACE = "{} updated in place"   # keys whose current version took the file's values
ADDED = "column {!r} added to the table (new)"     # a schema log line (docs/contracts.md)
# the same line read back: the column's name where ``{!r}`` stands
_ADDED_LINE = "^" + re.escape(ADDED).replace(re.escape("{!r}"), "'(.+)'") + "$"


def _added_from(layout: Layout, source: Source, day: dt.date) -> set[str]:
    """The columns a contract added to the source's table for files dated ``day`` or later,
    by the schema log."""
    logged = logs.read_schema_log(layout)
    logged = logged[(logged["source"] == source.name) & (logged["file_date"] >= day)]
    return set(logged["change"].str.extract(_ADDED_LINE)[0].dropna())


def _columns(source: Source, delivery: Delivery, table: Table, work: parts.FileWork
             ) -> tuple[list[str], list[str]]:
    """The columns a contract added (docs/contracts.md) the table holds once this file is
    applied, and the file's column changes: those its contract settled as it was read, the
    columns it adds to the table (``new_column = "evolve"``) and the added ones it lacks
    (empty from it on, or Quarantined when missing columns freeze)."""
    had = datafiles.added_columns(table, source)
    if isinstance(table, delta.Opened) and set(had) & set(work.extra):
        # added for it by a run that stopped after that (read only when it may have been)
        done = datafiles.columns_added_for(table, delivery.name, delivery.sha256)
        had = [c for c in had if c not in done]
    lacking = [c for c in had if c not in work.extra
               and not (c == drift.EXTRA and source.contract.new_column == "keep_extra")]
    if lacking and source.contract.missing_column == "freeze":
        raise Quarantined(readers.missing_columns(lacking))
    new = sorted(c for c in work.extra if c not in had)
    return [*had, *new], [*work.changes, *(ADDED.format(c) for c in new),
                          *(f"column {c!r} missing: kept, empty from this file on"
                            for c in lacking)]


def _log_changes(layout: Layout, source: Source, delivery: Delivery, changes: list[str]
                 ) -> None:
    """A file's column changes (docs/contracts.md) in the schema log, once."""
    if changes:
        logs.log_schema_changes(layout, {"source": source.name, "file": delivery.name,
                                         "file_date": source.file_date(delivery.name),
                                         "sha256": delivery.sha256}, changes)
        crashpoint("ingest.schema_logged")


def log_row(source: Source, delivery: Delivery, outcome: FileOutcome, clock: dict) -> dict:
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


def quarantine(layout: Layout, ingest_log: logs.IngestLog, source: Source,
                delivery: Delivery, reason: str, event: str = "") -> FileOutcome:
    """Log the file as quarantined, then move it to quarantine/<source>/ with its reason."""
    outcome = FileOutcome(source.name, delivery.name, "quarantined", reason=reason, event=event)
    log.error("%s/%s: quarantined: %s", source.name, delivery.name, reason)
    ingest_log.append([log_row(source, delivery, outcome, {})])
    crashpoint("quarantine.after_log")
    files.quarantine_file(layout, source, delivery.path, reason)
    return outcome


class Progress:
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


def _apply_in_order(layout: Layout, ingest_log: logs.IngestLog, source: Source,
                    pending: list[Delivery], ledger: Ledger, allow_mass_delete: bool,
                    bar: Progress, read_ahead: bool = False, engine: Engine | None = None
                    ) -> list[FileOutcome]:
    """The usual case: new files dated on or after everything applied, one commit each (and
    their log rows one commit for the run, :class:`logs.IngestLog`).

    With ``read_ahead``, the next file is read and validated while this one is compared and
    committed (files are still applied one at a time, in order): for when sources run one
    at a time and a core would otherwise wait."""
    table = delta.Opened(layout.table(source.name))
    commits = datafiles.applied_commits(table, ledger.last_version(source.name))
    outcomes = []
    with ThreadPoolExecutor(max_workers=1) as ahead:
        checks = (_checks_in_order(source, pending, ahead if read_ahead else None)
                  if engine is None else [None] * len(pending))
        for delivery, check in zip(pending, checks, strict=True):
            boundary(layout, f"applying {source.name}/{delivery.name}")
            try:
                if check is None:
                    outcome, clock = _apply_file(layout, source, delivery, table, commits,
                                                 allow_mass_delete, engine)
                else:
                    outcome, clock = _apply_checked(layout, source, check(), table, commits,
                                                    allow_mass_delete)
                log.info("%s", outcome.line())
                ingest_log.later([log_row(source, delivery, outcome, clock)])
            except Quarantined as reason:
                outcome = quarantine(layout, ingest_log, source, delivery, str(reason))
            outcomes += bar.tell([outcome])
            bar.step(source, delivery.name)
    return outcomes


def boundary(layout: Layout, doing: str) -> None:
    """Where a file begins: stop there if the root is no longer this run's (docs/guarantees.md) or a
    stop was asked for (Ctrl-C, SIGTERM)."""
    stopping.check(doing)
    lock.fence(layout.root, doing)


def _checks_in_order(source: Source, pending: list[Delivery],
                     ahead: ThreadPoolExecutor | None) -> Iterator[Callable[[], _Checked]]:
    """For each pending file, a call that returns it checked (or raises Quarantined). With
    ``ahead``, the next file's check is started on it when this file's call is taken."""
    if ahead is None:
        for delivery in pending:
            yield lambda delivery=delivery: check_file(source, delivery)
        return
    upcoming = None
    for i, delivery in enumerate(pending):
        running = upcoming or ahead.submit(check_file, source, delivery)
        upcoming = (ahead.submit(check_file, source, pending[i + 1])
                    if i + 1 < len(pending) else None)
        yield running.result


@dataclass
class _Replayed:
    """What replaying deliveries into a table not yet committed came to."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    logged: list[tuple[Delivery, FileOutcome, dict]] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)     # the commit's: name, sha256, counts

    def log(self, layout: Layout, ingest_log: logs.IngestLog, source: Source, ledger: Ledger,
            events: dict[str, str], version: int | None) -> list[FileOutcome]:
        """Log the files applied (with the version that holds them) and the earlier contents
        of resent files, superseded; return every outcome."""
        rows = [log_row(source, d, o, {**c, "table_version": version})
                for d, o, c in self.logged]
        ingest_log.append(rows + _superseded(layout, source, ledger, events, self.outcomes))
        return self.outcomes


def _replay(layout: Layout, ingest_log: logs.IngestLog, source: Source,
            deliveries: list[Delivery], ledger: Ledger, events: dict[str, str], note: str,
            allow_mass_delete: bool, bar: Progress, table: Table, what: str,
            engine: Engine | None = None) -> _Replayed:
    """Apply ``deliveries`` in order to ``table`` (a rebuild's scratch table, a repair's staged
    files): nothing reaches the live table until the caller commits. A file applied before
    may expire most keys again (it did then); one that cannot be applied now is quarantined."""
    bar.add(len(deliveries) - len(events))
    done = _Replayed()
    for delivery in deliveries:
        boundary(layout, f"replaying {source.name}/{delivery.name} (nothing of the {what} "
                          f"is applied until its last file)")
        before = ledger.status(delivery.name, delivery.sha256) == "applied"
        event = events.get(delivery.name, "rebuild" if what == "rebuild" else "replay")
        try:
            outcome, clock = _apply_file(layout, source, delivery, table, {},
                                         allow_mass_delete or before, engine)
        except Quarantined as reason:
            done.outcomes.append(quarantine(layout, ingest_log, source, delivery, str(reason),
                                            event))
            bar.step(source, delivery.name)
            continue
        outcome.event, outcome.note = event, note
        done.outcomes.append(outcome)
        done.logged.append((delivery, outcome, clock))
        done.files.append({"file": delivery.name, "sha256": delivery.sha256,
                           **outcome.counts()})
        bar.step(source, delivery.name)
    return done


def _rebuild(layout: Layout, ingest_log: logs.IngestLog, source: Source,
             deliveries: list[Delivery], ledger: Ledger, events: dict[str, str], note: str,
             allow_mass_delete: bool, bar: Progress, engine: Engine | None = None
             ) -> list[FileOutcome]:
    """Replay every archived file of ``source`` into a scratch table, swap it in at once.

    ``events`` names the files that caused the rebuild (file -> late | resent | rebuild)."""
    scratch = layout.scratch("rebuild") / source.name
    storage.remove_tree(scratch)
    log.warning("%s: rebuilding from %d archived file(s): %s", source.name, len(deliveries),
                note)
    done = _replay(layout, ingest_log, source, deliveries, ledger, events, note,
                   allow_mass_delete, bar, delta.Opened(scratch), "rebuild", engine)
    crashpoint("rebuild.before_swap")
    version = datafiles.replace_table(layout.table(source.name), scratch, source,
                                      {"source": source.name, "note": note,
                                       "files": done.files})
    crashpoint("rebuild.after_swap")
    outcomes = done.log(layout, ingest_log, source, ledger, events, version)
    storage.remove_tree(scratch)
    return outcomes


def _repair(layout: Layout, ingest_log: logs.IngestLog, source: Source, day: dt.date,
            deliveries: list[Delivery], ledger: Ledger, events: dict[str, str], note: str,
            allow_mass_delete: bool, bar: Progress) -> list[FileOutcome]:
    """Repair ``source`` from ``day`` on (docs/history.md): the table as the deliveries dated
    before it left it, then every delivery dated from it on replayed in order, all in one
    commit. The cost follows the days from that date, not the table's age.

    ``deliveries``: the source's files to apply from that date on, in order (those applied,
    and those ``events`` names: file -> late | resent | erasure | replay)."""
    opened = delta.Opened(layout.table(source.name))
    boundary(layout, f"repairing {source.name} from {day.isoformat()}")
    log.warning("%s: repairing from %s, replaying %d file(s): %s", source.name,
                day.isoformat(), len(deliveries), note)
    staged = datafiles.roll_back(opened, source, day)
    # the columns a contract added from that date on go with the versions: a file from
    # before them is replayed as the table stood then, not as one that lacks them
    if staged.added:
        gone = _added_from(layout, source, day)
        staged.added = [c for c in staged.added if c not in gone]
    crashpoint("repair.rolled_back")
    done = _replay(layout, ingest_log, source, deliveries, ledger, events, note,
                   allow_mass_delete, bar, staged, "repair")
    crashpoint("repair.before_commit")
    actions = staged.actions()
    version = None                  # nothing changed: no version made (the log says none)
    provenance = {"source": source.name, "note": note, "from": day.isoformat(),
                  "files": done.files}
    if actions:
        version = datafiles.commit(opened, source.widened(staged.widened), actions,
                                   provenance, staged.added, overwrite=staged.reshaped)
    elif opened.table() is not None:    # a column added, no version changed (all empty)
        datafiles.add_columns(opened, source, staged.added, provenance)
    crashpoint("repair.after_commit")
    staged.discard()
    return done.log(layout, ingest_log, source, ledger, events, version)


def _superseded(layout: Layout, source: Source, ledger: Ledger, events: dict[str, str],
                outcomes: list[FileOutcome]) -> list[dict]:
    """The log rows of the earlier contents of resent files, now superseded (their outcomes
    added to ``outcomes``)."""
    rows = []
    for name, event in events.items():
        old = ledger.applied_sha(name)
        if event == "resent" and old is not None:
            gone = FileOutcome(source.name, name, "superseded", event="resent",
                               note="superseded by a resent file of the same name")
            outcomes.append(gone)
            rows.append(log_row(source, Delivery(layout.archive(source.name), name, old, 0, 0),
                                 gone, {}))
    return rows


def not_applied(layout: Layout, source: Source, deliveries: list[Delivery],
             ledger: Ledger) -> list[Delivery]:
    """Archived files not applied yet (finishing a quarantine a killed run had started)."""
    pending = []
    for delivery in deliveries:
        status = ledger.status(delivery.name, delivery.sha256)
        if status == "applied":
            continue
        if status == "quarantined" and not (layout.quarantine(source.name)
                                            / delivery.name).exists():
            files.quarantine_file(layout, source, delivery.path,
                                ledger.reason(delivery.name, delivery.sha256))
            continue
        pending.append(delivery)
    return pending


def _one_snapshot_a_day(layout: Layout, ingest_log: logs.IngestLog, source: Source,
                        deliveries: list[Delivery], pending: list[Delivery], ledger: Ledger,
                        bar: Progress) -> tuple[list[Delivery], list[FileOutcome]]:
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
        quarantined.append(quarantine(
            layout, ingest_log, source, delivery, f"a second snapshot for {day.isoformat()}: "
            f"{other} was delivered for that date already"))
        bar.step(source, delivery.name)
    return keep, quarantined


def ingest_source(layout: Layout, ingest_log: logs.IngestLog, source: Source,
                   ledger: Ledger, allow_mass_delete: bool, bar: Progress,
                   rebuild: str | None = None, read_ahead: bool = False,
                   erased: frozenset[str] = frozenset(), engine: Engine | None = None,
                   deliveries: list[Delivery] | None = None) -> list[FileOutcome]:
    """``erased``: archived files an erasure rewrote (new content, but not resent);
    ``deliveries``: the source's :func:`archived` files, if the caller has listed them."""
    if deliveries is None:
        deliveries = archived(layout, source, ledger)
    pending = not_applied(layout, source, deliveries, ledger)
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
        return refused + _apply_in_order(layout, ingest_log, source, pending, ledger,
                                         allow_mass_delete, bar, read_ahead, engine)
    why = [f"{kind} file {name}" for name, kind in events.items()]
    if events and (rebuild is None or erased):
        # late, resent, or rewritten by an erasure: repaired from the earliest of their dates
        day = min(source.file_date(name) for name in events)
        events |= {d.name: "replay" for d in pending if d.name not in events}
        replay = [d for d in deliveries if source.file_date(d.name) >= day and (
            d.name in events or ledger.status(d.name, d.sha256) == "applied")]
        return refused + bar.tell(_repair(layout, ingest_log, source, day, replay, ledger,
                                          events, rebuild or "repaired for " + ", ".join(why),
                                          allow_mass_delete, bar))
    note = rebuild or ("rebuilt for " + ", ".join(why))
    events |= {d.name: "rebuild" for d in pending if d.name not in events}
    replay = [d for d in deliveries
              if d.name in events or ledger.status(d.name, d.sha256) == "applied"]
    return refused + bar.tell(_rebuild(layout, ingest_log, source, replay, ledger, events,
                                       note, allow_mass_delete, bar, engine))


def load_sources(layout: Layout, ingest_log: logs.IngestLog, ledger: Ledger,
                 allow_mass_delete: bool, bar: Progress, engine: Engine | None = None,
                 listed: dict[str, list[Delivery]] | None = None) -> list[FileOutcome]:
    """Every source's pending files, each source in its own file order. Sources are
    independent tables: ingested side by side (the heavy parts, Arrow compute and delta-rs,
    run without the GIL); large files go one source at a time, each reading its next file
    while it commits one. ``listed``: each source's :func:`archived` files, if listed
    already (the archives are listed here otherwise, before the sources' threads start: a
    listing is one system call a file, each of which hands the GIL to another thread)."""
    sources = of_root(layout.root)          # with the contracts the root declares
    if listed is None:
        listed = archived_of(layout, list(sources.values()), ledger)
    largest = max((d.size for deliveries in listed.values() for d in deliveries), default=0)
    side_by_side = largest <= SIDE_BY_SIDE_UP_TO_BYTES
    with ThreadPoolExecutor(max_workers=len(sources) if side_by_side else 1) as pool:
        per_source = [pool.submit(ingest_source, layout, ingest_log, s, ledger,
                                  allow_mass_delete, bar, read_ahead=not side_by_side,
                                  engine=engine, deliveries=listed[name])
                      for name, s in sources.items()]
        # Python runs a signal's handler in the main thread, and only when it wakes: a wait
        # without end would hear a Ctrl-C (stopping.py) only once every source is done
        while futures.wait(per_source, timeout=WAKE_SECONDS).not_done:
            pass
    return [f for files in per_source for f in files.result()]
