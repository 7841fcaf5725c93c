"""landing_zone/ -> archive/<source>/ (SPEC §2, step 1).

Files are moved with ``os.replace`` (atomic on one file system), so a crash leaves each file
either in the landing zone or in the archive. Nothing is deleted: a file that matches no source,
or whose name is already in the archive, stays in the landing zone and is reported.
"""

from __future__ import annotations

import filecmp
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from minilake.layout import Layout
from minilake.sources import source_of

log = logging.getLogger(__name__)


@dataclass
class SplitResult:
    moved: list[Path] = field(default_factory=list)          # their new place in archive/
    unmatched: list[Path] = field(default_factory=list)      # no source's pattern
    held: list[tuple[Path, str]] = field(default_factory=list)  # left in landing, and why

    def lines(self) -> list[str]:
        out = [f"split: {len(self.moved)} file(s) archived"]
        out += [f"split: {p.name} matches no source; left in landing_zone/" for p in self.unmatched]
        out += [f"split: {p.name}: {why}; left in landing_zone/" for p, why in self.held]
        return out


def split(root: str | Path = ".") -> SplitResult:
    """Move every landing file that matches a source into ``archive/<source>/``."""
    layout = Layout.of(root)
    result = SplitResult()
    if not layout.landing.is_dir():
        return result
    for path in sorted(layout.landing.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        source = source_of(path.name)
        if source is None:
            log.warning("%s: matches no source, left in landing_zone/", path.name)
            result.unmatched.append(path)
            continue
        target = layout.archive(source.name) / path.name
        if target.exists():
            same = filecmp.cmp(path, target, shallow=False)
            why = ("already archived (identical)" if same
                   else "a different file of that name is already archived")
            log.warning("%s/%s: %s, left in landing_zone/", source.name, path.name, why)
            result.held.append((path, why))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        log.info("%s/%s: archived", source.name, path.name)
        result.moved.append(target)
    return result
