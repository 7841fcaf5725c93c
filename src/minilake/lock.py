"""One writing command per root at a time (SPEC §6).

The lock is an ``fcntl.flock`` on ``ROOT/.minilake.lock``: the kernel releases it when the
holder dies, so a lock left by a killed run is never a dead end; the file keeps the holder's pid
and command so that a second command can say who holds the root. Within one process the lock is
re-entrant (``run`` takes it, then ``split`` and ``ingest`` take it again).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
_held: dict[Path, tuple[int, int]] = {}      # lock path -> (file descriptor, depth)


class RootBusy(Exception):
    """Another process holds the root."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process"
    return (f"pid {info.get('pid', '?')} ({info.get('command', '?')}, since "
            f"{info.get('since', '?')})")


@contextlib.contextmanager
def hold(root: Path, command: str) -> Iterator[None]:
    """Hold ``root``'s lock for the duration of the block, or raise :class:`RootBusy`."""
    path = root / ".minilake.lock"
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[path]
            _held[path] = (fd, depth - 1)
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RootBusy(f"{root} is in use by minilake {_holder(path)}; try again when it "
                       f"has finished") from None
    previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
    if previous:
        log.warning("%s: taking over the lock left by a run that did not finish (%s)", root,
                    _holder(path))
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "command": command or " ".join(sys.argv),
                             "since": dt.datetime.now().isoformat(timespec="seconds")}).encode())
    _held[path] = (fd, 1)
    try:
        yield
    finally:
        fd, depth = _held[path]
        if depth <= 1:
            del _held[path]
            os.ftruncate(fd, 0)          # an empty file: released cleanly
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        else:
            _held[path] = (fd, depth - 1)
