"""The Dask engine (README.md, the Dask engine): each file's key ranges worked on a
``dask.distributed`` cluster.

Per file: one task reads the file and cuts it into key ranges (``parts.read_split``, between
the current files' key intervals the driver sends it); a task per range validates its rows with
the source's pandera schema, hashes them and compares them with the current versions of its
range (``parts.work``), keeping the changes where it ran; the driver gathers only counts and
bad rows, checks and writes the error report (``ingest._settle``), then a task per range writes
its data files and returns their Delta actions, and the driver makes the file's one commit.
The code that runs is the local engine's (``parts``, ``validate``, ``scd2``, ``tables``):
only where it runs differs.

A worker lost mid-file is the scheduler's to handle: it runs the lost tasks again elsewhere
(from the read on, if the read's result went with the worker). If it cannot (the same tasks
lost ``distributed.scheduler.allowed-failures`` times, or the scheduler gone) the run stops
with :class:`EngineError` naming the file; nothing of that file was committed, and data files a
lost attempt wrote are in no table version (``minilake vacuum`` removes them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import tempfile
import time

from deltalake.transaction import RemoveAction

from minilake.contract.drift import Contract
from minilake.contract.sources import ALL_SOURCES, Source
from minilake.crashpoints import crashpoint
from minilake.lake import delta, storage
from minilake.load import EngineError, datafiles, parts

log = logging.getLogger(__name__)


def local_cluster(directory: str, workers: int | None = None):
    """A LocalCluster on 127.0.0.1 (a worker process per core, or ``workers``; one thread
    each), its scratch space under ``directory``. No dashboard; the scheduler's own HTTP
    routes on a free port, not on 8787, which another cluster here may hold; the scheduler's
    scratch with the workers' (else it leaves dask-scratch-space in the system temp folder)."""
    from distributed import LocalCluster  # on first use: start-up stays light

    return LocalCluster(
        n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
        host="127.0.0.1", dashboard_address=None, local_directory=directory,
        silence_logs=logging.CRITICAL,                  # the driver says what failed
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0", "local_directory": directory})


class Engine:
    """A Dask client for a run: on the scheduler at ``cluster``, or on a LocalCluster of this
    machine (a worker process per core, one thread each, on 127.0.0.1), closed with it."""

    def __init__(self, cluster: str | None = None, ranges: int | None = None):
        from distributed import Client  # on first use: start-up stays light

        self._cluster = None
        # the scheduler of a LocalCluster runs here: its INFO lines are not the run's
        logging.getLogger("distributed").setLevel(logging.WARNING)
        try:
            if cluster is None:
                # the workers' scratch space goes with the cluster
                self._scratch = tempfile.TemporaryDirectory(prefix="minilake-dask-")
                self._cluster = local_cluster(self._scratch.name)
                self.client = Client(self._cluster)
            else:
                self.client = Client(cluster, timeout="10s")
        except (OSError, TimeoutError) as error:
            if self._cluster is not None:
                self._cluster.close()
                self._scratch.cleanup()
            at = cluster or "a new LocalCluster"
            raise EngineError(f"cannot reach the Dask scheduler at {at}: {error}") from None
        threads = sum(self.client.nthreads().values())
        if ranges is not None and ranges < 1:
            raise ValueError(f"ranges must be at least 1, not {ranges}")
        self.ranges = ranges or max(threads, 1)
        log.info("dask engine: %s, %d worker thread(s), %d range(s) per file",
                 self.client.scheduler.address, threads, self.ranges)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._scratch.cleanup()

    def file_work(self, source: Source, delivery, table: delta.Opened
                  ) -> tuple[parts.FileWork, dict]:
        """A file's work on the cluster, up to the data files (written when the driver calls
        the result's ``write``). Raises UnreadableFile (the file's fault) or EngineError."""
        clock: dict = {"started": dt.datetime.now(dt.UTC)}
        where = f"{source.name}/{delivery.name}"
        t = time.perf_counter()
        files = datafiles.current_files(table, source)
        table_at = storage.uri(table.path)
        submit = self.client.submit
        split = submit(parts.read_split, source.name, storage.uri(delivery.path),
                       parts.components(files, source), self.ranges, source.contract,
                       pure=False)
        bounds, rows_read, changes, extra, needs = self._gather(
            [submit(_outline, split, pure=False)], where)[0]
        kinds, widened = datafiles.widen_for(table, source, needs, delivery.name,
                                             delivery.sha256)
        if widened:                     # the table widened first: its files rewritten
            changes = [*changes, *widened]
            files = datafiles.current_files(table, source)
        added = datafiles.added_columns(table, source)
        clock["read_s"] = time.perf_counter() - t
        per_range = parts.files_of(files, source, bounds)
        pieces = [submit(_part, split, i, pure=False) for i in range(len(per_range))]
        del split                       # dropped once every piece is taken from it
        worked = [submit(_work, source.name, table_at, piece, mine, source.contract, added,
                         needs, kinds, pure=False)
                  for piece, mine in zip(pieces, per_range, strict=True)]
        del pieces
        summaries = self._gather([submit(_summary, w, pure=False) for w in worked], where)
        clock["validate_s"] = max(s.seconds["validate_s"] for s in summaries)
        clock["diff_s"] = max(s.seconds["diff_s"] for s in summaries)
        day = source.file_date(delivery.name)

        def write() -> list:
            done = self._gather([submit(_write, source.name, table_at, w, mine, day,
                                        source.contract, kinds, pure=False)
                                 for w, mine in zip(worked, per_range, strict=True)], where)
            return [_action(action) for actions in done for action in actions]

        work = parts.merged(rows_read, summaries, write, changes, extra)
        work.kinds = kinds              # what the commit's schema holds (a table it creates)
        return work, clock

    def _gather(self, futures: list, where: str) -> list:
        from distributed import KilledWorker  # on first use: start-up stays light
        from distributed.comm.core import CommClosedError

        try:
            return self.client.gather(futures)
        except (KilledWorker, CommClosedError, OSError, TimeoutError) as error:
            raise EngineError(f"{where}: the Dask cluster failed on this file "
                              f"({type(error).__name__}: {error}); nothing of it was committed; "
                              f"run again") from None


# --- tasks (run on the workers) -----------------------------------------------------------------

def _outline(split: parts.Split) -> tuple:
    return split.bounds, split.rows_read, split.changes, split.extra, split.widened


def _part(split: parts.Split, index: int) -> parts.Part:
    return split.parts[index]


def _source(name: str, contract: Contract) -> Source:
    """A source with its contract as the root declares it (docs/contracts.md)."""
    return dataclasses.replace(ALL_SOURCES[name], contract=contract)


def _work(source_name: str, table: str, part: parts.Part, files: list[dict],
          contract: Contract, added: list[str], needs: dict[str, str],
          kinds: dict[str, str]) -> parts.Worked:
    """A part validated (its file's ``needs``: the columns it reads wider) and compared
    with the current versions of its range (the table's widened columns, ``kinds``)."""
    source = _source(source_name, contract)
    t = time.perf_counter()
    validated = parts.check(source.widened(needs), part)
    validate_s, t = time.perf_counter() - t, time.perf_counter()
    crashpoint("dask.validated")
    worked = parts.work(source.widened(kinds), storage.as_path(table), part, validated, files,
                        added)
    worked.seconds = {"validate_s": validate_s, "diff_s": time.perf_counter() - t}
    return worked


def _summary(worked: parts.Worked) -> parts.Worked:
    return worked.summary()


def _write(source_name: str, table: str, worked: parts.Worked, files: list[dict],
           day: dt.date, contract: Contract, kinds: dict[str, str]) -> list:
    crashpoint("dask.writing")
    return [_portable(action) for action in datafiles.write_changes(
        storage.as_path(table), _source(source_name, contract).widened(kinds), worked.changes,
        day, files, ordered=True)]


def _portable(action):
    """A Delta action as something pickle can carry (delta-rs's RemoveAction is not)."""
    if isinstance(action, RemoveAction):
        return ("remove", action.path, action.data_change, action.deletion_timestamp,
                action.size, action.partition_values)
    return action


def _action(portable):
    return RemoveAction(*portable[1:]) if isinstance(portable, tuple) else portable
