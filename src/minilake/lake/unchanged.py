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
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE = ".run-state.json"
FORMAT = 2          # 2: tables carry the history policy (a state of 1 makes the next run full)


def _files(base: Path) -> list[list]:
    """[relative path, size, modification time] of every entry under ``base``, sorted (one
    ``lstat`` each, from ``scandir``: a link is what it is, followed nowhere)."""
    found = []
    folders = [("", str(base))]
    while folders:
        prefix, folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append((f"{prefix}{entry.name}/", entry.path))
                continue
            stat = entry.stat(follow_symlinks=False)
            found.append([prefix + entry.name, stat.st_size, stat.st_mtime_ns])
    return sorted(found)


def _latest_commit(table: Path) -> str:
    """A table's latest commit file; for a plain file (the marts' refresh mark), its size
    and modification time."""
    if not table.is_dir():
        stat = table.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    try:
        names = [e.name for e in os.scandir(table / "_delta_log") if e.name.endswith(".json")]
    except FileNotFoundError:
        return ""
    return max(names, default="")


def signature(root: Path) -> dict | None:
    """What the root looks like now, or None when ``landing_zone/`` holds something."""
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
            "archive": _files(root / "archive"),
            "quarantine": _files(root / "quarantine"),
            "scratch": [n for n in entries if n.startswith(".") and not n.startswith(STATE)],
            "tables": {str(p.relative_to(tables)): _latest_commit(p) for p in folders}}


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


def remember(root: Path) -> None:
    """Write the root's signature (atomically: a reader sees the old state or the new)."""
    now = signature(root)
    if now is None:
        return
    state = root / "tables" / STATE
    partial = state.with_name(f"{STATE}.partial")
    partial.write_text(json.dumps(now), encoding="utf-8")
    os.replace(partial, state)
