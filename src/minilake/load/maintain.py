"""Table maintenance (docs/history.md, "Maintenance"): what keeps a day's cost flat as the lake
ages. A run does it when a threshold is crossed, and says so in one line; ``minilake maintain``
does it on demand.

- **Compaction.** Each day adds small files to a table: the versions it closed go to the history
  partition, a day's sales to their dates' partitions. A partition's small files are put
  together as one data-unchanged commit per table: every version reads the rows it read, so
  ``version=``, ``as_of`` and ``known_at`` reads answer as before. History files are put
  together only with those closed in the same month, so that repairing a late file (which
  rewrites the history closed from its date on, :func:`datafiles.roll_back`) rewrites this
  month's history, not years of it. A partition then holds at most one history file per month
  of closing (more only past ``ROWS_PER_FILE`` rows) and fewer than ``COMPACT_AT`` small ones.
- **Checkpoints.** Opening a table reads its last checkpoint and the commits after it; a table
  is checkpointed every ``CHECKPOINT_EVERY`` commits, and maintenance checkpoints the rest.
- **Clean-up within the history policy.** Versions go only when the root's policy lets them
  (:func:`history.enforce`); data files no kept version refers to (a killed run's, a repair's
  intermediate files) are removed. Nothing a kept version reads is ever removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from minilake.contract.sources import SOURCES
from minilake.crashpoints import crashpoint
from minilake.lake import delta
from minilake.lake.layout import Layout
from minilake.load import datafiles

# A group of small files (one partition, and for history one month of closing) is compacted by a
# run once it holds this many; ``minilake maintain`` compacts any group of two or more.
COMPACT_AT = 10
SMALL_ROWS = datafiles.ROWS_PER_FILE // 2


@dataclass
class Maintained:
    """What maintenance did to one table."""

    table: str
    files_before: int = 0
    files_after: int = 0
    groups: int = 0
    version: int | None = None
    checkpointed: bool = False
    orphans: list[str] = field(default_factory=list)

    def line(self) -> str:
        done = []
        if self.groups:
            done.append(f"{self.files_before} data files -> {self.files_after} ({self.groups} "
                        f"group(s) of small files compacted, data unchanged, version "
                        f"{self.version})")
        if self.checkpointed:
            done.append("checkpointed")
        if self.orphans:
            done.append(f"{len(self.orphans)} unreferenced file(s) removed")
        return f"maintain: {self.table}: " + ("; ".join(done) or "nothing to do")


def files_of(table) -> pa.Table:
    """A table's live data files with what grouping and compacting them needs (path, size,
    rows, partition values, latest closing date): a few of the log's columns, not the
    statistics of every column."""
    files = pa.table(table.get_add_actions(flatten=True))
    wanted = [n for n in files.column_names if n in ("path", "size_bytes", "num_records",
                                                     "max.expiry_date")
              or n.startswith("partition.")]
    return files.select(wanted)


def small_groups(files: pa.Table, source_partitions: list[str], at_least: int
                 ) -> list[list[dict]]:
    """Groups of small files worth compacting: per partition, and for history per month of
    closing (``YYYY-MM`` of the latest expiry date); only groups of ``at_least`` files or more.
    Counted in Arrow: a table's files grow with its partitions (a day of sales each), and
    only the files of a group worth compacting become Python values."""
    small = files.filter(pc.less(pc.fill_null(files["num_records"], 0), SMALL_ROWS))
    if small.num_rows < at_least:
        return []
    if "max.expiry_date" in small.column_names:
        closed = pc.utf8_slice_codeunits(pc.cast(small["max.expiry_date"], pa.string()), 0, 7)
        month = pc.if_else(pc.fill_null(small["partition.is_current"], False), "",
                           pc.fill_null(closed, ""))
    else:
        month = pa.repeat("", small.num_rows)
    keys = [pc.cast(small[f"partition.{p}"], pa.string()) for p in source_partitions]
    names = [*source_partitions, "_month"]
    grouping = pa.table([*keys, month, pa.array(range(small.num_rows))], names=[*names, "_i"])
    grouped = grouping.group_by(names, use_threads=False).aggregate([("_i", "list")])
    grouped = grouped.filter(pc.greater_equal(pc.list_value_length(grouped["_i_list"]),
                                              at_least))
    groups = [(row["_month"], small.take(sorted(row["_i_list"])).to_pylist())
              for row in grouped.to_pylist()]
    # in the order of their partition values as Python writes them, then month of closing
    return [files for _, files in sorted(groups, key=lambda g: (
        tuple(str(g[1][0][f"partition.{p}"]) for p in source_partitions), g[0]))]


def maintain_table(layout: Layout, name: str, at_least: int, checkpoint: bool
                   ) -> Maintained:
    """Compact one source's table's groups of ``at_least`` small files or more; checkpoint it
    (``checkpoint``) if its latest version is not."""
    source = SOURCES[name]
    opened = delta.Opened(layout.table(name))
    table = opened.table()
    done = Maintained(name)
    if table is None:
        return done
    files = files_of(table)
    groups = small_groups(files, datafiles.partitioning(source), at_least)
    done.files_before = done.files_after = len(files)
    if groups:
        merged = sum(len(g) for g in groups)
        done.version = datafiles.compact(opened, source, groups,
                                         f"compacted {merged} small files in {len(groups)} "
                                         f"group(s)")
        crashpoint("maintain.after_commit")
        done.groups = len(groups)
        done.files_after = len(opened.table().get_add_actions())
    if checkpoint:
        table = opened.table()
        if table.version() % delta.CHECKPOINT_EVERY:
            table.create_checkpoint()
            done.checkpointed = True
            crashpoint("maintain.checkpointed")
    return done


def due(layout: Layout) -> bool:
    """Whether a run should maintain the sources' tables: a group of ``COMPACT_AT`` small files
    in one of them (read from the tables' logs, no data file opened)."""
    for name, source in SOURCES.items():
        path = layout.table(name)
        if not delta.exists(path):
            continue
        if small_groups(files_of(delta.delta(path)), datafiles.partitioning(source),
                        COMPACT_AT):
            return True
    return False


def maintain(layout: Layout, *, at_least: int = 2, checkpoint: bool = True,
             orphans: bool = True) -> list[Maintained]:
    """Maintenance of the sources' tables (compaction, checkpoints), the history step of the
    root's policy, then the files no kept version refers to. The caller holds the root."""
    done = [maintain_table(layout, name, at_least, checkpoint) for name in SOURCES]
    if orphans:
        for item in done:
            path = layout.table(item.table)
            if delta.exists(path):
                item.orphans = delta.remove_orphans(path)
        crashpoint("maintain.orphans_removed")
    return done
