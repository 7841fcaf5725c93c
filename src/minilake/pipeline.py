"""The pipeline: the only place that wires the stages (docs/architecture.md).

    landing_zone/ --split--> archive/ --erasures--> --load--> tables/ --marts--> tables/marts/

``run`` holds the root and does each in that order: :mod:`~minilake.inbound.landing` moves the
deliveries, :mod:`~minilake.erasure.requests` applies erasure requests (before anything else:
a later delivery must meet its customers erased), :mod:`~minilake.load.ingest` applies every
other delivery per source, :mod:`~minilake.outbound.marts` moves the marts on from what the
load changed, and the history step enforces the root's policy. ``ingest`` is the same without
the split and the marts, ``rebuild`` replays a source, ``vacuum`` removes data files no version
refers to, ``maintain`` compacts and checkpoints the tables (a run does it when a threshold is
crossed). No stage imports a later one; each is called from here (and the command line, the
job server, the DAG and the notebooks call these).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from minilake import stopping
from minilake.contract.sources import SOURCES, of_root
from minilake.erasure import requests as erasures_stage
from minilake.inbound.landing import SplitResult, split
from minilake.lake import delta, lock, logs, storage, unchanged
from minilake.lake.layout import KEPT, MARTS, Layout
from minilake.lake.lock import hold
from minilake.lake.logs import Ledger
from minilake.load import datafiles, history, rejects
from minilake.load import maintain as upkeep  # `maintain` is the operation
from minilake.load.ingest import (
    IngestResult,
    Progress,
    archived_of,
    ingest_source,
    load_sources,
)
from minilake.outbound import lineage, runreport
from minilake.outbound import marts as datamarts  # `marts` is run()'s switch

if TYPE_CHECKING:
    from minilake.load.distributed import Engine


@dataclass
class RunResult:
    split: SplitResult
    ingest: IngestResult
    months: list[dt.date] | None = None       # months the run touched (None: every month)
    marts: dict[str, int] = field(default_factory=dict)   # rows written per mart
    report: Path | None = None                # its run report's page (docs/quality.md)

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


Say = Callable[[str], None]


def _quiet(line: str) -> None:
    """What a caller that asks for no lines as they come gets: ``result.lines()`` at the end."""


def ingest(root: str | Path = ".", *, allow_mass_delete: bool = False,
           progress: bool | None = None, engine: str = "local", cluster: str | None = None,
           ranges: int | None = None, say: Say | None = None) -> IngestResult:
    """Apply every archived file not yet applied, per source in file-date order; erasure
    requests first (each rewrites the raw customer files and rebuilds the customer table).

    ``engine="dask"`` runs each file's work on a Dask cluster (README.md, the Dask engine): the
    scheduler at
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
    from minilake.load.distributed import Engine  # on first use: start-up stays light

    with Engine(cluster, ranges) as running:
        yield running


def _ingest(layout: Layout, allow_mass_delete: bool, progress: bool | None,
            engine: Engine | None, say: Say = _quiet) -> IngestResult:
    brought = _said(say, history.bring_to_policy(layout))
    ledger = Ledger(logs.read_log(layout))
    bar = Progress(progress, say)
    with logs.IngestLog(layout) as ingest_log:
        erased = erasures_stage.apply_requests(layout, ingest_log, ledger, allow_mass_delete,
                                               bar, engine)
        if erased:
            ingest_log.flush()
            ledger = Ledger(logs.read_log(layout))
        listed = archived_of(layout, list(SOURCES.values()), ledger)
        listed["customer"] = erasures_stage.scrub_pending(layout, ledger, listed["customer"])
        loaded = load_sources(layout, ingest_log, ledger, allow_mass_delete, bar, engine,
                              listed)
    bar.close()
    rejects.sync(layout)        # the error reports of the files just logged, as a table
    files = erased + loaded
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
        ledger = Ledger(logs.read_log(layout))
        bar = Progress(progress, say)
        sources = of_root(layout.root)
        with logs.IngestLog(layout) as ingest_log:
            for name in [source] if source else list(sources):
                result.files += ingest_source(layout, ingest_log, sources[name], ledger,
                                               allow_mass_delete, bar,
                                               rebuild="rebuild requested")
        bar.close()
        rejects.sync(layout)
        return result


def vacuum(root: str | Path = ".", *, dry_run: bool = False) -> dict[str, list[str]]:
    """Remove the data files no table version refers to (per table, the files removed, or
    with ``dry_run`` those that would be): what a run killed between writing a file's data
    files and its commit left, or a Dask worker lost mid-write (README.md, the Dask engine). Every
    version's
    files stay, so time travel is untouched."""
    layout = Layout.of(root)
    with hold(layout.root, "vacuum"):
        paths = ([layout.table(name) for name in SOURCES]
                 + [layout.mart(name) for name in (*MARTS, *KEPT)])
        return {delta.named(path).removeprefix("tables/"): delta.remove_orphans(path, dry_run)
                for path in paths if delta.exists(path)}


def maintain(root: str | Path = ".", *, say: Say | None = None) -> list[str]:
    """Table maintenance on demand (docs/history.md, "Maintenance"): each source's table's
    small files compacted (data unchanged: every version reads what it read) and checkpointed,
    the data files no version refers to removed, then the root's history policy applied.
    Returns a line per table (and per policy step)."""
    layout = Layout.of(root)
    say = say or _quiet
    with hold(layout.root, "maintain"):
        done = _said(say, [d.line() for d in upkeep.maintain(layout)])
        return done + _said(say, history.enforce(layout))


def run(root: str | Path = ".", *, allow_mass_delete: bool = False,
        progress: bool | None = None, marts: bool = True, engine: str = "local",
        cluster: str | None = None, ranges: int | None = None,
        say: Say | None = None, lineage_parent: lineage.Parent | None = None) -> RunResult:
    """split, ingest, then bring the marts up to the files applied since they were last
    refreshed (``marts=False`` leaves that to the caller: ``result.months`` says which months
    those files touched). ``say`` is given each line of ``result.lines()`` as soon as what it
    says is done. Its OpenLineage events (docs/quality.md) name ``lineage_parent`` as the run
    that started it (a scheduler's task), if given."""
    layout = Layout.of(root)
    say = say or _quiet
    started = dt.datetime.now(dt.UTC)
    of_root(layout.root)        # a contract it cannot follow stops the run before files move
    events = lineage.RunLineage(layout, lock.run_id(started), lineage_parent)
    events.start(started)
    try:
        return _run(layout, allow_mass_delete, progress, marts, engine, cluster, ranges,
                    say, started, events)
    except BaseException as error:
        events.finish(started, error)
        raise


def _run(layout: Layout, allow_mass_delete: bool, progress: bool | None, marts: bool,
         engine: str, cluster: str | None, ranges: int | None, say: Say,
         started: dt.datetime, events: lineage.RunLineage) -> RunResult:
    # the engine first: a cluster that cannot be reached stops the run before any file moves
    with hold(layout.root, "run") as claim, _engine(engine, cluster, ranges) as running:
        claim.run = lock.run_id(started)        # what its rejected rows name (its report)
        moved = split(layout.root)
        _said(say, moved.lines())
        with hold(layout.root, "ingest"):
            result = RunResult(moved, _ingest(layout, allow_mass_delete, progress, running,
                                              say))
        if marts:
            import pyarrow as pa  # on first use: start-up stays light

            stopping.check("bringing the marts up to date (the next run does it)")
            pa.default_memory_pool().release_unused()   # the ingest's buffers, before the marts
            result.months, result.marts = refresh_marts(layout.root)
            if result.marts:
                say(result.lines()[-1])
        else:
            result.months = datamarts.touched_months(layout)
        result.ingest.history += _said(say, history.enforce(layout))
        if result.ingest.files and upkeep.due(layout):
            result.ingest.history += _said(say, [
                d.line() for d in upkeep.maintain(layout, at_least=upkeep.COMPACT_AT,
                                                  orphans=False) if d.groups])
        if result.ingest.files:
            result.report = _reported(layout, started, result, say)
        events.finish(started)          # while the root is held: the log read is kept
        if storage.is_local(layout.root) and (marts or result.months == []):
            # the next run with nothing to do: 0.1 s
            unchanged.remember(Path(layout.root), claim.listings, {
                path: table.version() for path, table in claim.handles.items()})
        return result


def replay_rejects(corrections: str | Path, delivery: str, root: str | Path = ".", *,
                   progress: bool | None = None, say: Say | None = None) -> RunResult:
    """Fix and replay (docs/quality.md): the rows of ``corrections`` (a file in the form of
    ``delivery``, an archived file's name) applied as that delivery: its good rows and these
    delivered again under its name, then run. Its source is repaired from its date on (a
    resent file), so the tables end as if the rows had come right the first time."""
    layout = Layout.of(root)
    with hold(layout.root, "replay-rejects"):
        _, data = rejects.corrected_delivery(layout, delivery, Path(corrections))
        landed = layout.landing / delivery
        if landed.exists():
            raise rejects.CannotReplay(f"landing_zone/{delivery}: a delivery of that name "
                                       f"waits there already; run first")
        storage.write_bytes(landed, data)
        return run(root, progress=progress, say=say)


def _reported(layout: Layout, started: dt.datetime, result: RunResult, say: Say
              ) -> Path | None:
    """The run's report written (docs/quality.md); its page's path, said. A report that
    cannot be written is said in one line: the run's data is in, and stays."""
    files = [runreport.RunFile(f.source, f.file, f.status, f.reason, f.event, f.note,
                               f.rows_read, f.rows_loaded, f.rows_rejected)
             for f in result.ingest.files]
    try:
        page = runreport.write(layout, runreport.build(layout, started,
                                                       dt.datetime.now(dt.UTC), files))
    except (OSError, ValueError, ArithmeticError, KeyError) as error:
        say(f"run report: not written ({type(error).__name__}: {error})")
        return None
    say(f"run report: {page.relative_to(layout.root).as_posix()}")
    return page


def status(root: str | Path = ".") -> pd.DataFrame:
    """Per source: files archived / applied / quarantined / superseded, late and resent files,
    rebuilds, last applied date, rows, rejected rows, changes of a file's columns
    (docs/contracts.md; :func:`schema_changes` lists them); table versions kept, and gone
    (with why: the history policy, an erasure)."""
    layout = Layout.of(root)
    log_rows = logs.read_log(layout)
    ledger = Ledger(log_rows)
    changed = logs.read_schema_log(layout)["source"].value_counts()
    rows = []
    for source in SOURCES.values():
        mine = ledger.latest[ledger.latest["source"] == source.name]
        applied = mine[mine["status"] == "applied"].reset_index()
        # a file an erasure rewrote has a row per content: count its latest
        applied = applied.sort_values("finished_at", kind="stable").drop_duplicates(
            "file", keep="last")
        archived = layout.archive(source.name)
        current, total = datafiles.row_counts(layout.table(source.name))
        commits = delta.versions(layout.table(source.name))
        rows.append({
            "source": source.name,
            "archived": sum(1 for p in storage.files(archived) if source.file_date(p.name)),
            "applied": len(applied),
            "quarantined": int((mine["status"] == "quarantined").sum()),
            "superseded": int((mine["status"] == "superseded").sum()),
            "late": int((mine["event"] == "late").sum()),
            "resent": int(((mine["event"] == "resent") & (mine["status"] == "applied")).sum()),
            "rebuilds": int((commits["operation"] == "REBUILD").sum()),
            "repairs": int((commits["operation"] == "REPAIR").sum()),
            "last_date": applied["file_date"].max() if len(applied) else None,
            "current_rows": current,
            "all_versions": total,
            "rejected_rows": int(applied["rows_rejected"].sum()),
            "schema_changes": int(changed.get(source.name, 0)),
            **history.table_history(layout, source.name, log_rows, commits),
        })
    return pd.DataFrame(rows)


def schema_changes(root: str | Path = ".") -> pd.DataFrame:
    """Every change of a file's columns from its source's declaration, as its contract
    settled it (docs/contracts.md): source, file, file date, sha256, the change, when logged."""
    return logs.read_schema_log(Layout.of(root))


def erasures(root: str | Path = ".") -> pd.DataFrame:
    """One row per applied erasure request (docs/guarantees.md): customers named and found, table
    versions and files rewritten, the first table version kept, when."""
    log_rows = logs.read_erasure_log(Layout.of(root))
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


def refresh_marts(root: str | Path = ".") -> tuple[list[dt.date] | None, dict[str, int]]:
    """Bring the marts up to the files applied since they were last refreshed (what ``run``
    does after the load, and the DAG's ``refresh_marts`` task): the months recomputed (None:
    every month) and the rows written per mart."""
    return datamarts.catch_up(root)
