"""A delivery's life in the root beside the tables (docs/formats.md): kept as
``NAME.superseded-N`` when a file of its name comes again with other content, and moved to
``quarantine/<source>/`` with ``NAME.reason.txt`` when it cannot be applied. Every path is
the root's :class:`~minilake.lake.layout.Layout`'s; every write goes through the storage seam
(fenced)."""

from __future__ import annotations

from pathlib import Path

from minilake.crashpoints import crashpoint
from minilake.lake import storage
from minilake.lake.layout import Layout


def superseded_name(path: Path) -> Path:
    """``NAME.superseded-N`` with the first free N: a name no source claims. A copy of
    ``path`` already kept under such a name (an S3 move that stopped before its delete) is
    that name again, so the earlier file is not kept twice."""
    n = 1
    while (candidate := path.with_name(f"{path.name}.superseded-{n}")).exists():
        if not storage.is_local(path) and storage.same_bytes(candidate, path):
            return candidate
        n += 1
    return candidate


def quarantine_file(layout: Layout, source, path: Path, reason: str) -> None:
    """``path`` to ``quarantine/<source>/`` beside its reason (written first, so that a crash
    in between leaves a reason; an earlier quarantined file of that name is kept as
    superseded)."""
    folder = layout.quarantine(source.name)
    storage.write_bytes(folder / f"{path.name}.reason.txt", (reason + "\n").encode("utf-8"))
    crashpoint("quarantine.after_reason")
    target = folder / path.name
    if target.exists() and path.exists() and not storage.same_bytes(target, path):
        storage.move(target, superseded_name(target))           # keep what was there
    if path.exists():
        storage.move(path, target)
