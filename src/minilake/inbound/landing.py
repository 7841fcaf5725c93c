"""landing_zone/ -> archive/<source>/ (docs/architecture.md, step 1).

Files are moved with ``os.replace`` (atomic on one file system), so a crash leaves each file
either in the landing zone or in the archive. On S3 (docs/guarantees.md) a move is a copy, then a
delete:
a crash between the two leaves the file in both places, and the next split finds the archived
copy identical (same name, same bytes) and only deletes the landing one; ingest knows a file by
name and sha256, so it is applied once. A file that matches no source stays in the landing
zone and is reported. A file delivered again byte for byte (a day pulled twice, a resent export
nobody changed) is dropped from the landing zone, said once: its archived copy is the same bytes,
so nothing is lost, and it is not reported again on every run. A file of a name already
archived with other content is a resent file: the earlier one is kept beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from minilake import stopping
from minilake.contract.sources import Source, source_of
from minilake.crashpoints import crashpoint
from minilake.lake import files, lock, storage
from minilake.lake.layout import Layout

log = logging.getLogger(__name__)


@dataclass
class SplitResult:
    moved: list[Path] = field(default_factory=list)          # their new place in archive/
    unmatched: list[Path] = field(default_factory=list)      # no source's pattern
    dropped: list[Path] = field(default_factory=list)        # identical to their archived copy
    superseded: list[tuple[Path, Path]] = field(default_factory=list)  # (archived, kept as)
    refused: list[tuple[Path, str]] = field(default_factory=list)   # not regular files: what

    def lines(self) -> list[str]:
        out = [f"split: {len(self.moved)} file(s) archived"]
        out += [f"split: {a.name} was delivered again with other content; the earlier one is "
                f"kept as {k.name}" for a, k in self.superseded]
        out += [f"split: {p.name} was delivered again, identical to archive/{p.parent.name}/"
                f"{p.name}; dropped from landing_zone/" for p in self.dropped]
        out += [f"split: {p.name} matches no source; left in landing_zone/" for p in self.unmatched]
        out += [f"split: {p.name} is a {kind}, not a regular file; left in landing_zone/ "
                f"(minilake reads only regular files inside the root, and follows no link)"
                for p, kind in self.refused]
        return out


def split(root: str | Path = ".") -> SplitResult:
    """Move every landing file that matches a source into ``archive/<source>/``."""
    layout = Layout.of(root)
    with lock.hold(layout.root, "split"):
        return _split(layout)


def _split(layout: Layout) -> SplitResult:
    result = SplitResult()
    listed, odd = storage.scan(layout.landing)
    for path, kind in odd:
        if not path.name.startswith("."):
            log.info("%s: a %s, not a regular file; left in landing_zone/", path.name, kind)
            result.refused.append((path, kind))
    for path, _, _ in listed:
        if path.name.startswith("."):
            continue
        source = source_of(path.name)
        if source is None:
            log.info("%s: matches no source, left in landing_zone/", path.name)
            result.unmatched.append(path)
            continue
        stopping.check(f"archiving {path.name}")
        try:
            _archive(layout, source, path, result)
        except FileNotFoundError:
            # gone from under a run paused past its lease: the run that took the root over
            # archived it; that is what to say, not which file went missing
            lock.fence(layout.root, f"archiving {path.name}")
            raise
    return result


def _archive(layout: Layout, source: Source, path: Path, result: SplitResult) -> None:
    """One landing file into ``archive/<source>/``: dropped if identical to the archived one,
    the earlier one kept beside it if resent with other content."""
    target = layout.archive(source.name) / path.name
    if target.exists():
        if storage.same_bytes(path, target):
            storage.remove(path)
            log.warning("%s/%s: delivered again, identical to the archived copy; dropped "
                        "from landing_zone/", source.name, path.name)
            result.dropped.append(target)
            return
        kept = files.superseded_name(target)
        storage.move(target, kept)            # a resent file: keep the earlier one
        crashpoint("split.superseded")
        log.warning("%s/%s: resent with other content; the earlier one is kept as %s",
                    source.name, path.name, kept.name)
        result.superseded.append((target, kept))
    crashpoint("split.before_move")
    storage.move(path, target)
    crashpoint("split.after_move")
    log.info("%s/%s: archived", source.name, path.name)
    result.moved.append(target)


# --- back to the checked-out state (README.md, the sample world) ----------------------------------

GENERATED = ["tables", "error_reports", "reports", "exports", "jobs", "quarantine", "archive"]


@dataclass
class ResetResult:
    moved_back: list[str] = field(default_factory=list)   # files returned to landing_zone/
    dropped: list[str] = field(default_factory=list)      # byte-identical copies of samples/
    kept: list[str] = field(default_factory=list)         # could not go back (name taken)
    deleted: list[str] = field(default_factory=list)      # generated folders removed
    erased: int = 0                                       # erasure requests that were applied

    def lines(self) -> list[str]:
        out = [f"reset: {len(self.moved_back)} file(s) moved back to landing_zone/, "
               f"{len(self.dropped)} copy(ies) of samples/ dropped, deleted "
               f"{', '.join(f + '/' for f in self.deleted) or 'nothing'}"]
        out += [f"reset: {k} kept: a different file of that name is in landing_zone/"
                for k in self.kept]
        out += [f"reset: {m} moved back from quarantine/: it was quarantined (its reason is gone "
                f"with quarantine/; a run quarantines it again)"
                for m in self.moved_back if m.startswith("quarantine/")]
        if self.erased:
            out.append(f"reset: {self.erased} erasure request(s) had rewritten deliveries now "
                       f"back in landing_zone/; they stay erased (in a git checkout, `git "
                       f"checkout landing_zone/` gives the committed sample back)")
        return out


def _samples_by_name(root: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in storage.tree(root / "samples"):
        found.setdefault(path.name, []).append(path)
    return found


def _is_sample_copy(path: Path, samples: dict[str, list[Path]]) -> bool:
    return any(storage.same_bytes(path, s) for s in samples.get(path.name, []))


def reset(root: str | Path = ".") -> ResetResult:
    """Move archived and quarantined files back to landing_zone/ (dropping byte-identical
    copies of files in samples/), then delete tables, error reports, reports, exports, the
    job server's records, quarantine and archive: the root is left as checked out."""
    layout = Layout.of(root)
    with lock.hold(layout.root, "reset"):
        return _reset(layout)


def _reset(layout: Layout) -> ResetResult:
    result = ResetResult(erased=len(storage.files(layout.archive("erasure_requests"))))
    samples = _samples_by_name(layout.root)
    storage.mkdirs(layout.landing)
    for folder in ("archive", "quarantine"):
        for path in storage.tree(layout.root / folder):
            if path.name.endswith(".reason.txt"):
                continue
            where = path.relative_to(layout.root).as_posix()
            target = layout.landing / path.name
            if _is_sample_copy(path, samples):
                storage.remove(path)
                result.dropped.append(where)
            elif not target.exists():
                storage.move(path, target)
                result.moved_back.append(where)
            elif storage.same_bytes(path, target):
                storage.remove(path)
                result.dropped.append(where)
            else:
                result.kept.append(where)
    for path in storage.files(layout.landing):
        if _is_sample_copy(path, samples):
            storage.remove(path)
            result.dropped.append(path.relative_to(layout.root).as_posix())
    for name in GENERATED:
        folder = layout.root / name
        if folder.exists() and not any(k.startswith(name + "/") for k in result.kept):
            storage.remove_tree(folder)
            result.deleted.append(name)
    return result


def land_sample(root: str | Path = ".", sample: str = "broken_day") -> list[str]:
    """Copy ``samples/<sample>/`` into landing_zone/ (files already archived identically are
    not copied again); return the names of the sample's files."""
    layout = Layout.of(root)
    with lock.hold(layout.root, "land_sample"):
        return _land_sample(layout, sample)


def _land_sample(layout: Layout, sample: str) -> list[str]:
    folder = layout.root / "samples" / sample
    found = storage.files(folder)
    if not found:
        known = sorted({p.relative_to(layout.root / "samples").parts[0]
                        for p in storage.tree(layout.root / "samples")})
        raise FileNotFoundError(f"no sample {sample!r} in {layout.root / 'samples'} "
                                f"(samples: {', '.join(known) or 'none'})")
    names = []
    for path in found:
        names.append(path.name)
        source = source_of(path.name)
        archived = layout.archive(source.name) / path.name if source else None
        if archived is not None and archived.exists() and storage.same_bytes(path, archived):
            continue
        storage.copy(path, layout.landing / path.name)
    return names
