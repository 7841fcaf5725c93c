"""Delta tables under a root, read and written the one way minilake does it (docs/architecture.md):
opened local or on S3 with the storage seam's settings, once a run (the run holding a root keeps
one handle per table, brought up to date only when a commit followed it), read by Arrow's own
filesystems, and every commit fenced (docs/guarantees.md).

Every commit minilake makes carries Delta's transaction identifier, ``txn`` (application id
``minilake.<table>``, a version from the writing run's epoch and its count of commits to the
table, :mod:`minilake.lake.lock`), and is refused when the table already holds that version or
a later run's, or when a commit made since the snapshot it is based on carries the same
application id (delta-rs's own conflict check). A run paused for any time, then resumed, cannot
commit over the runs that went on meanwhile. Tables are made with the root's history policy as
properties, and no commit cleans the log on its own (:mod:`minilake.lake.policy`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import PostCommitHookProperties, Transaction

from minilake.lake import lock, policy, storage

COMMIT_KEY = "minilake"

# Commits between checkpoints. Opening a table replays the commits since its last checkpoint
# and a daily run opens ~20 tables: at 20, day 60 of a 10x lake spent 0.23 s opening them
# against 0.05-0.08 s on day 2; at 5, 0.12 s (benchmarks/README, flat cost).
CHECKPOINT_EVERY = 5


# a commit, a checkpoint (single, multi-part, or named by a UUID: v2), or a compacted log range
_ENTRY = re.compile(r"[0-9]{20}\.(json|checkpoint(\.[0-9]{10}\.[0-9]{10}|\.[0-9a-f-]{36})?"
                    r"\.parquet|[0-9]{20}\.compacted\.json)")


def exists(path: Path) -> bool:
    """Whether a table is at ``path``: a log holding a commit or a checkpoint. Locally, the
    log folder is read only up to its first such entry (delta-rs lists all of it, a few ms a
    call for a log of a thousand versions, and a run asks some thirty times).

    A run holding the root asks once a table: under a held root a table comes only by the
    run's own first commit (:func:`made`) and goes only by the run's removal of its folder
    (:func:`minilake.lake.storage.remove_tree`), so the answer is kept by the run's claim.
    On S3 each answer is a request (~5 ms), and a run on a new root asked ~80 times."""
    claim = lock.claim_of(path)
    known = claim.tables.get(str(path)) if claim is not None else None
    if known is not None:
        return known
    found = _exists(path)
    if claim is not None:
        claim.tables[str(path)] = found
    return found


def _exists(path: Path) -> bool:
    if storage.is_local(path):
        try:
            with os.scandir(Path(path) / "_delta_log") as entries:
                return any(_ENTRY.fullmatch(entry.name) for entry in entries)
        except (FileNotFoundError, NotADirectoryError):   # or a file (.run-state.json)
            return False
    return DeltaTable.is_deltatable(storage.uri(path), storage.delta_options(path))


@contextlib.contextmanager
def made(path: Path) -> Iterator[None]:
    """Around a commit that creates the table at ``path``: the run holding the root knows it
    is there after (and asks again if the commit failed)."""
    claim = lock.claim_of(path)
    try:
        yield
    except BaseException:
        if claim is not None:
            claim.tables.pop(str(path), None)
        raise
    if claim is not None:
        claim.tables[str(path)] = True


def delta(path: Path, version: int | None = None) -> DeltaTable:
    """The Delta table at ``path`` (local or on S3), at ``version`` or the latest.

    While this process holds the table's root (a run), the latest is the run's one handle on
    the table, brought up to date if a commit followed it: a table is opened once a run, not
    by every stage and step that reads it (each open lists the whole log and reads its
    checkpoint, which grew a daily run with the lake's age, benchmarks/README.md). A handle
    is shared by the run's threads (delta-rs serialises the calls on one handle)."""
    claim = lock.claim_of(path) if version is None else None
    if claim is None:
        return _open(path, version)
    table = claim.handles.get(str(path))
    if table is None or not _fresh(path, table):
        table = claim.handles[str(path)] = _open(path)
    return table


def _open(path: Path, version: int | None = None) -> DeltaTable:
    return DeltaTable(storage.uri(path), version=version,
                      storage_options=storage.delta_options(path))


def committed(path: Path, version: int) -> bool:
    """Whether the table at ``path`` still has the commit file of ``version`` (one stat;
    every commit is a file of its own, whatever checkpoints there are)."""
    return (path / "_delta_log" / f"{version:020d}.json").exists()


def _fresh(path: Path, table: DeltaTable) -> bool:
    """Whether ``table``, a handle on the table at ``path``, is at its latest version, after
    bringing it there if commits followed it; False when the table was made again since (its
    handle's version is gone from the log: to be opened afresh). Locally two ``stat`` calls
    answer when nothing followed, where ``update_incremental`` lists the whole log (a few ms
    a call for a log of a thousand versions). Every commit is a file of its own, whatever
    checkpoints there are; on S3 the handle is brought up to date."""
    if storage.is_local(path):
        local, version = Path(path), table.version()
        if not committed(local, version):
            return False
        if not committed(local, version + 1):
            return True
    table.update_incremental()
    return True


# After a commit, delta-rs checkpoints by the table's interval but never cleans up the log on
# its own: removing versions is the history step's (docs/guarantees.md, minilake.lake.policy).
KEEP_LOG = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def created(path: Path) -> dict[str, str]:
    """The properties a table minilake makes carries from its first commit: the history
    policy of its root."""
    return policy.of_table(path).properties()


def app_id(path: Path) -> str:
    """The application id of minilake's commits to the table at ``path`` (Delta's ``txn``)."""
    return f"minilake.{path.name}"


def named(path: Path) -> str:
    """A table's path for messages: from ``tables/`` on, else as it is."""
    parts = str(path).split("/tables/", 1)
    return f"tables/{parts[1]}" if len(parts) == 2 else str(path)


def fenced(path: Path, table: DeltaTable | None, doing: str,
           metadata: dict | None = None) -> CommitProperties:
    """The properties of a commit to the table at ``path``, based on the snapshot ``table``
    (None: the table is created), that only the run holding the root can make: its ``txn``
    carries the run's next version for the table, refused here if the snapshot holds that
    version or a later run's already (``LeaseLost``, naming ``doing``), and by delta-rs if
    another commit carrying this application id lands after the snapshot (see
    :func:`refused`). Outside a held root (tools, tests) a commit is not fenced.

    A commit that creates the table is tried once: delta-rs retries a create that lost the
    race for version 0 as version 1 (a second "create", with its files), without looking at
    the winner's ``txn``; so two runs that both believe they hold the root (one paused past
    its lease and resumed while the other creates the same table) would both apply their
    file. Tried once, the second is refused (docs/history.md)."""
    once = {"max_commit_retries": 0} if table is None else {}
    claim = lock.claim_of(path)
    if claim is None:
        return CommitProperties(custom_metadata=metadata, **once)
    claim.fence(doing)
    app, version = app_id(path), claim.next_version(str(path))
    held = table.transaction_version(app) if table is not None else None
    if held is not None and held >= version:
        raise claim.lost(doing, f"{named(path)} holds the commits of a run that took the "
                                f"root later (txn {held})")
    return CommitProperties(custom_metadata=metadata, **once, app_transactions=[
        Transaction(app, version, int(time.time() * 1000))])


@contextlib.contextmanager
def refused(path: Path, doing: str) -> Iterator[None]:
    """A commit to the table at ``path`` that delta-rs refuses (another commit landed after
    its snapshot: a later run's, or the table made meanwhile) stops the run with one line,
    ``LeaseLost``, when the root is held (then only another run could have committed)."""
    try:
        yield
    except (CommitFailedError, DeltaError) as error:
        claim = lock.claim_of(path)
        if claim is None or not (isinstance(error, CommitFailedError)
                                 or "already exists" in str(error)):
            raise
        raise claim.lost(doing, f"another run committed to {named(path)} since this run "
                                f"read it") from None


def write(path: Path, data, *, doing: str | None = None, table: DeltaTable | None = None,
          **kwargs) -> None:
    """``write_deltalake`` at ``path`` (local or on S3), fenced (:func:`fenced`): based on
    ``table`` (an open handle), else on the table as it is now, or creating it (refused if
    another run made it meanwhile)."""
    doing = doing or f"writing {named(path)}"
    if table is None and exists(path):
        table = delta(path)
    kwargs["commit_properties"] = fenced(path, table, doing, getattr(
        kwargs.get("commit_properties"), "custom_metadata", None))
    if table is None:
        storage.mkdirs(path.parent)
        kwargs["configuration"] = {**kwargs.get("configuration", {}), **created(path)}
        if lock.claim_of(path) is not None:   # made by this commit, or by nobody
            kwargs["mode"] = "error"
            kwargs.pop("schema_mode", None)
            kwargs.pop("predicate", None)
    else:
        kwargs.pop("configuration", None)     # a table's properties change by policy only
    with refused(path, doing), made(path) if table is None else contextlib.nullcontext():
        write_deltalake(storage.uri(path) if table is None else table, data,
                        storage_options=storage.delta_options(path),
                        post_commithook_properties=KEEP_LOG, **kwargs)


def dataset(path: Path, version: int | None = None, where: list | None = None,
            table: DeltaTable | None = None, dictionary: tuple[str, ...] = ()) -> ds.Dataset:
    """A table's live files (at ``version``, else the latest; or of the open ``table``) as a
    pyarrow dataset, read by Arrow's own local filesystem.

    ``where`` (filters as ``read`` takes them) keeps only the files whose partition values
    and column statistics may hold matching rows, picked from the Delta log before any file
    is set up: a dataset of every file costs ~0.5 ms a file (60 ms for a table of 120), which
    grew a daily run with its history. Rows are not filtered by it (``read`` does both).
    ``dictionary``: text columns read as dictionary arrays (Parquet keeps them so): a column of
    a few thousand names over millions of rows is read without making a string per row.

    delta-rs's default dataset reads through a filesystem written in Python: Arrow's I/O
    threads take the GIL for every file they open, while a delta-rs call on another thread
    may hold the GIL and wait for delta-rs's runtime, whose threads wait for those reads (a
    rebuild's swap streams such a dataset into ``write_deltalake``). Every minilake table is
    a local folder or an S3 prefix, read by Arrow's own filesystem for either, so no Python
    runs inside a read."""
    table = table if table is not None else delta(path, version)
    filesystem, base = storage.arrow(path)
    options = ds.ParquetReadOptions(dictionary_columns=list(dictionary)) if dictionary else None
    return table.to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(base, filesystem),
                                    file_pruning_predicate=where, parquet_read_options=options)


def read(path: Path, filters: list, columns: list[str] | None = None,
         also: pc.Expression | None = None, table: DeltaTable | None = None,
         dictionary: tuple[str, ...] = ()) -> pa.Table:
    """A table's rows (``columns``) matching ``filters`` and the expression ``also``;
    ``dictionary``: text columns kept as dictionary arrays while the rows are filtered, and
    given back as plain text (see ``dataset``).

    ``filters`` are in the form delta-rs and pyarrow share, ``(column, op, value)`` tuples:
    a list of them ANDed, or a list of such lists ORed. Written once, they pick the files
    from the Delta log (``dataset``'s ``where``) and then the rows; ``also`` only filters
    rows (a condition on thousands of keys, say). A group with an empty ``in`` matches
    nothing."""
    groups = filters if filters and isinstance(filters[0], list) else [filters]
    groups = [g for g in groups if not any(op == "in" and not len(v) for _, op, v in g)]
    if not groups:          # nothing matches: the columns' types from the log, no file set up
        schema = pa.schema((table if table is not None else delta(path)).schema().to_arrow())
        return pa.schema([schema.field(n) for n in columns or schema.names]).empty_table()
    wanted = pq.filters_to_expression(groups)
    rows = dataset(path, where=groups, table=table, dictionary=dictionary).to_table(
        columns=columns, filter=wanted if also is None else wanted & also)
    if not dictionary:
        return rows
    return rows.cast(pa.schema([f.with_type(f.type.value_type)
                                if pa.types.is_dictionary(f.type) else f for f in rows.schema]))


class Opened:
    """A table's path and, once the table exists, the one handle minilake keeps on it (a
    table is opened once, not for every file or every read: a few ms each): brought up to
    date before each write (:meth:`table`; the run holds the root, no other writer), or kept
    at the version first read (:meth:`snapshot`: the reads of one marts refresh see one
    version of each table)."""

    def __init__(self, path: Path):
        self.path = path
        self._table: DeltaTable | None = None

    def table(self) -> DeltaTable | None:
        """The table at its latest version, or None before its first commit."""
        if self._table is None and not exists(self.path):
            return None
        if (self._table is None or lock.claim_of(self.path) is not None   # the run's handle
                or not _fresh(self.path, self._table)):
            self._table = delta(self.path)
        return self._table

    def snapshot(self) -> DeltaTable:
        """The table as it was when first asked for (it must exist). While the root is held
        this is the run's handle (:func:`delta`), which only a commit to the table moves on:
        a marts refresh commits to none of the tables it reads."""
        if self._table is None:
            self._table = delta(self.path)
        return self._table


def after_commit(opened: Opened) -> int:
    """The version just committed, read from the run's handle (checkpointed every
    ``CHECKPOINT_EVERY`` versions)."""
    table = opened.table()
    version = table.version()
    if version and version % CHECKPOINT_EVERY == 0:
        table.create_checkpoint()
    return version


def versions(path: Path) -> pd.DataFrame:
    """``version``, ``committed_at``, ``operation``, ``files``: each table version and the
    file(s) it came from."""
    rows = []
    for entry in delta(path).history() if exists(path) else []:
        meta = json.loads(entry.get(COMMIT_KEY, "{}"))
        files = [f["file"] for f in meta.get("files", [meta] if "file" in meta else [])]
        what = meta.get("note", "")
        rows.append({"version": entry["version"],
                     "committed_at": pd.Timestamp(entry["timestamp"], unit="ms", tz="UTC"),
                     "operation": ("COMPACT" if "compacted" in meta else
                                   "REPAIR" if "from" in meta else
                                   "REBUILD" if "files" in meta else entry.get("operation")),
                     "files": ", ".join(files) if len(files) < 4 else
                     f"{len(files)} files: {files[0]} ... {files[-1]}",
                     "note": what})
    return pd.DataFrame(rows, columns=["version", "committed_at", "operation", "files", "note"]
                        ).sort_values("version").reset_index(drop=True)


def remove_versions_before(path: Path, start: int) -> None:
    """The versions of the table at ``path`` before ``start`` removed (a checkpoint at
    ``start`` must be there): their log entries, then the data files only they referred to.
    What an erasure's purge and the history policy do; the run's handle on the table, which
    may still refer to the entries removed, is let go."""
    last = start
    for entry in storage.files(path / "_delta_log"):
        stem = entry.name.split(".", 1)[0]
        if stem.isdigit():
            last = max(last, int(stem))
            if int(stem) < start:
                storage.remove(entry)
    claim = lock.claim_of(path)
    if claim is not None:
        claim.handles.pop(str(path), None)
    remove_orphans(path, keep_versions=list(range(start, last + 1)))


def remove_orphans(path: Path, dry_run: bool = False,
                   keep_versions: list[int] | None = None) -> list[str]:
    """Data files of the table at ``path`` that no version of ``keep_versions`` (default:
    every version) refers to, removed; sorted, relative to the table.

    Only files written before the run holding the root took it are removed: a file written
    since is a commit under way (this run's, or, if this run was paused and lost the root,
    the next run's), which a vacuum must not pull from under it. Each removal is fenced."""
    table = delta(path)
    keep = list(versions(path)["version"]) if keep_versions is None else keep_versions
    found = table.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False,
                         full=True, keep_versions=keep)
    claim = lock.claim_of(path)
    if claim is not None and found:
        filesystem, base = storage.arrow(path)
        infos = filesystem.get_file_info([f"{base}/{name}" for name in found])
        found = [name for name, info in zip(found, infos, strict=True)
                 if info.mtime_ns is not None and info.mtime_ns // 1_000_000 < claim.since_ms]
    if not dry_run:
        for name in found:
            storage.remove(path / name)
    return sorted(found)


def compact(path: Path, table: DeltaTable) -> None:
    """A log table's small files put together (a data-unchanged commit, fenced like the
    others) and checkpointed, every ``CHECKPOINT_EVERY`` versions: one small file per row
    otherwise."""
    if not table.version() or table.version() % CHECKPOINT_EVERY:
        return
    doing = f"compacting {named(path)}"
    with refused(path, doing):
        table.optimize.compact(commit_properties=fenced(path, table, doing),
                               post_commithook_properties=KEEP_LOG)
    table.create_checkpoint()           # the handle is at the compaction's version
