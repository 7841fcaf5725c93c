"""Table history (docs/guarantees.md, docs/history.md): kept by the root's policy, read back by
version,
by business date and by the time something was known, with each version's lineage.

- Every table minilake writes carries the root's policy as properties from its first commit
  (``delta.created``); a table made before the policy existed, or under another one, is
  brought to it by :func:`bring_to_policy`, one metadata-only commit, said once.
- Nothing removes a version but :func:`enforce`, the history step of a run on a root that
  keeps versions a number of days, which says what it removed (and an erasure, docs/guarantees.md,
  which
  purges the versions before it on purpose and says so).
- The lineage of a version (the deliveries that made it) is in the ingest log's rows, which are
  data, not history: :func:`versions` lists the versions the Delta log still has and those it
  no longer has, each with its files and why it went.
- ``read_table(name, as_of=D, known_at=T)``: what the table said about business date D as it
  stood at time T (its last version committed by then).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from minilake.contract.sources import SOURCES
from minilake.lake import delta, logs, policy, storage
from minilake.lake.layout import Layout
from minilake.load import datafiles


def all_tables(layout: Layout) -> list[Path]:
    """Every table minilake writes under the root that exists: the sources' tables, the logs,
    the marts and the tables they are kept from."""
    return [p for p in layout.tables_written() if delta.exists(p)]


def _name(path: Path) -> str:
    return str(path).rsplit("/tables/", 1)[-1]


MARK = ".history-policy.json"      # under tables/: the policy every table was brought to


def bring_to_policy(layout: Layout) -> list[str]:
    """Set the root's policy on every table that does not carry it (made by an earlier
    minilake, or before the policy changed): a metadata-only commit each, fenced like any
    other. Returns the line that says so, or none.

    Tables are made with the policy, so once every table carries it a mark says so, and a run
    opens no table to check again until the policy changes (or the mark goes)."""
    wanted = policy.of(layout.root)
    mark = layout.root / "tables" / MARK
    said = json.dumps({"keep_days": wanted.keep_days})
    try:
        if mark.read_text(encoding="utf-8") == said:
            return []
    except FileNotFoundError:
        pass
    brought = []
    for path in all_tables(layout):
        table = delta.delta(path)
        if wanted.holds(table.metadata().configuration):
            continue
        doing = f"setting the history policy of {_name(path)}"
        with delta.refused(path, doing):
            table.alter.set_table_properties(
                wanted.properties(), commit_properties=delta.fenced(path, table, doing),
                post_commithook_properties=delta.KEEP_LOG)
        brought.append(_name(path))
    storage.write_bytes(mark, said.encode("utf-8"))
    if not brought:
        return []
    return [f"history: {len(brought)} table(s) brought to the root's policy "
            f"({wanted.describe()}): {', '.join(brought)}"]


def _log_entries(path: Path) -> tuple[dict[int, int], list[int]]:
    """A table's commit versions (version -> modification time, ms) and checkpoint
    versions."""
    commits, checkpoints = {}, set()
    for entry, _, mtime_ns in storage.listing(path / "_delta_log"):
        stem = entry.name.split(".", 1)[0]
        if not stem.isdigit():
            continue
        if entry.name.endswith(".json") and entry.name.count(".") == 1:
            commits[int(stem)] = mtime_ns // 1_000_000
        elif ".checkpoint." in entry.name:
            checkpoints.add(int(stem))
    return commits, sorted(checkpoints)


def enforce(layout: Layout) -> list[str]:
    """The history step: on a root that keeps versions ``keep_days``, remove from each table
    the versions older than that which a checkpoint lets go (every version before the first
    one kept is older than the policy), then the data files only they needed. Nothing is
    removed under the default policy. Returns a line per table that lost versions."""
    keep = policy.of(layout.root).keep_days
    if keep is None:
        return []
    cutoff = time.time() * 1000 - keep * 86_400_000
    said = []
    for path in all_tables(layout):
        commits, checkpoints = _log_entries(path)
        first = min(commits, default=0)
        start = first
        for checkpoint in checkpoints:          # the latest one all before it is older
            if all(mtime < cutoff for version, mtime in commits.items() if version < checkpoint):
                start = checkpoint
        if start <= first:
            continue
        delta.remove_versions_before(path, start)
        said.append(f"history: {_name(path)}: versions {first}-{start - 1} removed (older "
                    f"than {keep} day(s), the root's history policy)")
    return said


def _gone_why(layout: Layout, name: str, version: int) -> str:
    """Why a version of a source's table is no longer in its Delta log."""
    if name == "customer":
        erased = logs.read_erasure_log(layout)
        later = erased[erased["history_from_version"].fillna(-1) > version]
        if len(later):
            first = later.iloc[0]
            return (f"purged by the erasure requested by {first['request_file']} "
                    f"({first['erased_at']:%Y-%m-%d %H:%M} UTC)")
    keep = policy.of(layout.root).keep_days
    if keep is not None:
        return f"removed by the root's history policy (versions kept {keep} day(s))"
    return "no longer in the table's log"


def versions(layout: Layout, source: str, log_rows: pd.DataFrame | None = None,
             kept: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each version of a source's table and the file(s) it came from: those its Delta log
    has (``kept``: ``delta.versions``, read here if not given), and those it no longer has,
    from the ingest log's rows (``log_rows``, as read, else read here: when each was logged,
    its files, and why it went)."""
    path = layout.table(source)
    kept = (delta.versions(path) if kept is None else kept).copy()
    kept["kept"] = True
    log_rows = logs.read_log(layout) if log_rows is None else log_rows
    made = log_rows[(log_rows["source"] == source) & (log_rows["status"] == "applied")
                    & log_rows["table_version"].notna()]
    held = set(kept["version"])
    gone = []
    for version, rows in made.groupby("table_version", sort=True):
        version = int(version)
        if version in held or (len(held) and version > max(held)):
            continue
        files = sorted(rows["file"].unique())
        gone.append({"version": version, "committed_at": rows["finished_at"].min(),
                     "operation": ("WRITE" if (rows["event"] == "").all() else "REBUILD"
                                   if rows["event"].isin(["rebuild", "erasure"]).any()
                                   else "REPAIR"),
                     "files": ", ".join(files) if len(files) < 4 else
                     f"{len(files)} files: {files[0]} ... {files[-1]}",
                     "note": _gone_why(layout, source, version), "kept": False})
    frame = pd.concat([pd.DataFrame(gone, columns=kept.columns), kept] if gone else [kept],
                      ignore_index=True)
    said = _schema_changes(layout, source, made)
    frame["schema_changes"] = [said.get(int(v), "") for v in frame["version"]]
    return frame.sort_values("version").reset_index(drop=True)


def _schema_changes(layout: Layout, source: str, made: pd.DataFrame) -> dict[int, str]:
    """Per table version, the column changes (docs/contracts.md) of the files it applied."""
    changes = logs.read_schema_log(layout)
    changes = changes[changes["source"] == source]
    if not len(changes):
        return {}
    joined = made[["file", "sha256", "table_version"]].merge(changes, on=["file", "sha256"])
    said = joined["file"] + ": " + joined["change"]
    return {int(v): "; ".join(rows) for v, rows in said.groupby(joined["table_version"])}


def check_version_kept(layout: Layout, name: str, path: Path, version: int) -> None:
    """A version the Delta log no longer has is a one-line error that says why (an erasure,
    docs/guarantees.md, or the history policy, docs/history.md)."""
    kept = delta.versions(path)["version"]
    if len(kept) and version < kept.min():
        why = _gone_why(layout, name, version)
        if why.startswith("purged by the erasure"):
            raise ValueError(
                f"{name} version {version} no longer exists: {why} purged the versions "
                f"before {int(kept.min())} so that no copy of the erased data remains; time "
                f"travel by date (as_of=) still covers every day".replace(
                    "purged by the erasure", "the erasure", 1))
        raise ValueError(f"{name} version {version} no longer exists: {why}; the table's "
                         f"history starts at version {int(kept.min())} (versions() still "
                         f"lists the file(s) each version came from)")
    if len(kept) and version > kept.max():
        raise ValueError(f"{name} has no version {version} yet (latest: {int(kept.max())})")


def instant(when: dt.datetime | dt.date | str) -> dt.datetime:
    """A moment in UTC: a date (or ``YYYY-MM-DD``) means the end of that day; a time without
    a zone is UTC."""
    if isinstance(when, str):
        try:
            when = (dt.date.fromisoformat(when) if len(when) == 10
                    else dt.datetime.fromisoformat(when))
        except ValueError:
            raise ValueError(f"not a date or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]): "
                             f"{when!r}") from None
    if not isinstance(when, dt.datetime):
        when = dt.datetime.combine(when, dt.time.max)
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def version_known_at(layout: Layout, name: str, path: Path,
                     when: dt.datetime | dt.date | str) -> int | None:
    """The table's last version committed by ``when`` (None: the table did not exist yet);
    an error if that version is no longer kept."""
    moment = instant(when)
    kept = delta.versions(path)
    if not len(kept):
        return None
    done = kept[kept["committed_at"] <= pd.Timestamp(moment)]
    if len(done):
        return int(done["version"].max())
    if name in SOURCES:
        lineage = versions(layout, name)
        earlier = lineage[(~lineage["kept"])
                          & (lineage["committed_at"] <= pd.Timestamp(moment))]
        if len(earlier):
            check_version_kept(layout, name, path, int(earlier["version"].max()))
    return None


def as_date(value: dt.date | str) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def valid_on(day: dt.date | str) -> pc.Expression:
    """The versions valid on ``day`` (docs/formats.md): ``effective_from <= day < expiry_date``."""
    day = pa.scalar(as_date(day), pa.date32())
    return (pc.field("effective_from") <= day) & (pc.field("expiry_date") > day)


def table_path(layout: Layout, name: str) -> Path:
    """The table ``name``'s folder; a one-line ``FileNotFoundError`` naming the tables the
    root has when it has none of that name (a name starting with ``.`` is scratch, never a
    table)."""
    path = layout.table(name)
    if name.startswith(".") or not delta.exists(path):
        known = sorted(p.name for p in (layout.root / "tables").glob("*")
                       if not p.name.startswith(".") and delta.exists(p))
        raise FileNotFoundError(f"no table {name!r} under {layout.root / 'tables'} "
                                f"(tables: {', '.join(known) or 'none yet'})")
    return path


def read_table(name: str, as_of: dt.date | str | None = None, root: str | Path = ".",
               version: int | None = None,
               known_at: dt.datetime | dt.date | str | None = None) -> pd.DataFrame:
    """A table as a DataFrame: every version, or with ``as_of`` only those valid on that date
    (``effective_from <= as_of < expiry_date``). ``version`` reads the table as it was at that
    Delta version, for audits (``versions`` lists them and the file each came from);
    ``known_at`` as it stood at that time (its last version committed by then; a date means
    the end of that day, UTC): with ``as_of``, what the table said then about that date."""
    layout = Layout.of(root)
    path = table_path(layout, name)
    if version is not None and known_at is not None:
        raise ValueError("give version= or known_at=, not both")
    if known_at is not None:
        version = version_known_at(layout, name, path, known_at)
        if version is None:                      # the table was not made yet
            return _typed(name, pa.schema(delta.delta(path).schema().to_arrow())
                          .empty_table()).to_pandas()
    elif version is not None:
        check_version_kept(layout, name, path, version)
    if as_of is None:
        return _typed(name, delta.dataset(path, version).to_table()).to_pandas()
    # delta.read picks the files by the filters from the log first (only those that may hold
    # a version valid on the date are opened), then the rows
    day = as_date(as_of)
    return _typed(name, delta.read(path, [("effective_from", "<=", day),
                                          ("expiry_date", ">", day)],
                                   table=delta.delta(path, version))).to_pandas()


def typed_schema(name: str, stored: pa.Schema) -> pa.Schema | None:
    """The columns and types a table stored as ``stored`` is read in: a source's declared
    ones, then any a contract added or widened (docs/contracts.md); None for a table that is
    read as stored."""
    if name not in SOURCES:
        return None
    source = datafiles.of_table(stored, SOURCES[name])
    return datafiles.table_schema(source, datafiles.added_of(source, stored.names))


def _typed(name: str, data: pa.Table) -> pa.Table:
    """A source's table in its declared columns and types (then any a contract added), in key
    order (a correction on the day of the version it corrects closes that version on the day
    it opened: expiry_date orders such versions too)."""
    schema = typed_schema(name, data.schema)
    if schema is None:
        return data
    data = data.select(schema.names).cast(schema)
    return data.sort_by([(SOURCES[name].key, "ascending"), ("effective_from", "ascending"),
                         ("expiry_date", "ascending")])


def table_history(layout: Layout, source: str, log_rows: pd.DataFrame | None = None,
                  kept: pd.DataFrame | None = None) -> dict:
    """For ``status``: versions the table's log keeps, versions gone, and why (``log_rows``
    and ``kept`` as :func:`versions` takes them)."""
    lineage = versions(layout, source, log_rows, kept)
    gone = lineage[~lineage["kept"]]
    return {"versions_kept": int(lineage["kept"].sum()), "versions_gone": len(gone),
            "gone_why": "; ".join(sorted({why.split(" (")[0] for why in gone["note"]}))}

