"""Knowing that a run has nothing to do without loading the pipeline (issue 19).

A run that ends well leaves ``tables/.run-state.json``: what its root looked like at the end
(nothing in ``landing_zone/``; each file under ``archive/`` and ``quarantine/`` with its size and
modification time; the latest commit of every table, marts included; the scratch folders under
``tables/``). The next ``python -m minilake run`` compares the root with it first: if nothing
changed, the run would split nothing and apply nothing, and says so at once, without importing
pandas, pandera or delta-rs. Anything else (a landed file, a file touched in the archive, a table
rebuilt, reset or removed, a state written by another version) is a full run. Local roots
only; the comparison is made holding the root's lock.

The archive is compared by name, size and modification time: the ingest log's own shortcut for
a file already applied (``Ledger.trusted_sha``), so this says nothing the full run would not.
A run remembers each archive folder as it listed it to find its files (one ``lstat`` a file,
3,300 files after three years), with what it wrote, moved and removed there since
(``minilake.lake.storage``), not as another process may have left it meanwhile: a file
changed, replaced or added while the run went on is then not in the state, so the next run is
a full one and applies it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from minilake.lake import storage

STATE = ".run-state.json"
FORMAT = 2          # 2: tables carry the history policy (a state of 1 makes the next run full)


Listed = dict[str, tuple[dict[str, tuple[int, int]], dict[str, str]]]


def _files(base: Path, listed: Listed | None = None) -> list[list]:
    """[relative path, size, modification time] of every entry under ``base``, sorted (one
    ``lstat`` each: a link is what it is, followed nowhere). ``listed``: folders as a run
    listed and changed them (``minilake.lake.storage.entries``), taken as they are; any
    other folder is listed the same way here."""
    found = []
    folders = [("", str(base))]
    while folders:
        prefix, folder = folders.pop()
        known = listed.get(folder) if listed else None
        if known is None:
            regular, odd = storage.entries(Path(folder))
            known = ({n: (size, mtime_ns) for n, size, mtime_ns in regular}, dict(odd))
        regular, odd = known
        found += [[prefix + name, size, mtime_ns]
                  for name, (size, mtime_ns) in list(regular.items())]
        for name, kind in list(odd.items()):
            if kind == "folder":
                folders.append((f"{prefix}{name}/", os.path.join(folder, name)))
                continue
            try:
                stat = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            found.append([prefix + name, stat.st_size, stat.st_mtime_ns])
    return sorted(found)


def _latest_commit(table: Path, version: int | None = None) -> str:
    """A table's latest commit file; for a plain file (the marts' refresh mark), its size
    and modification time. ``version``: the one the run's handle is at, the latest if its
    commit file is there and the next one's is not (two ``stat`` calls, where the log's
    listing grows with the lake's age: 1,400 entries for three years of sales)."""
    if version is not None:
        log = table / "_delta_log"
        name = f"{version:020d}.json"
        if (log / name).exists() and not (log / f"{version + 1:020d}.json").exists():
            return name
    if not table.is_dir():
        stat = table.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    try:
        names = [e.name for e in os.scandir(table / "_delta_log") if e.name.endswith(".json")]
    except FileNotFoundError:
        return ""
    return max(names, default="")


def signature(root: Path, listed: Listed | None = None,
              versions: dict[str, int] | None = None) -> dict | None:
    """What the root looks like now, or None when ``landing_zone/`` holds something;
    ``listed``: folders listed already (:func:`_files`); ``versions``: the version of each
    table a run has a handle on, by path (:func:`_latest_commit`)."""
    versions = versions or {}
    try:
        with os.scandir(root / "landing_zone") as landed:
            if any(landed):
                return None
    except FileNotFoundError:
        pass
    tables = root / "tables"
    try:
        entries = sorted(e.name for e in os.scandir(tables))
    except FileNotFoundError:
        return None
    folders = [tables / n for n in entries if not n.startswith(".")]
    folders += sorted((tables / "marts").glob("*")) if "marts" in entries else []
    settings = root / "minilake.toml"     # the history policy: a change is a full run
    return {"format": FORMAT, "settings": _latest_commit(settings) if settings.exists() else "",
            "archive": _files(root / "archive", listed),
            "quarantine": _files(root / "quarantine"),
            "scratch": [n for n in entries if n.startswith(".") and not n.startswith(STATE)],
            "tables": {str(p.relative_to(tables)): _latest_commit(p, versions.get(str(p)))
                       for p in folders}}


def nothing_to_do(root: str | Path) -> bool:
    """Whether the root is exactly as the last run that ended well left it."""
    if "://" in str(root):
        return False
    root = Path(root)
    try:
        remembered = json.loads((root / "tables" / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    now = signature(root)
    return now is not None and now == remembered


def remember(root: Path, listed: Listed | None = None,
             versions: dict[str, int] | None = None) -> None:
    """Write the root's signature (atomically: a reader sees the old state or the new);
    ``listed`` and ``versions``: what the run knows already (:func:`signature`)."""
    now = signature(root, listed, versions)
    if now is None:
        return
    state = root / "tables" / STATE
    partial = state.with_name(f"{STATE}.partial")
    partial.write_text(json.dumps(now), encoding="utf-8")
    os.replace(partial, state)
