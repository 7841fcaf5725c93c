"""One writing command per root at a time (SPEC §6, §12).

On a local root the lock is an ``fcntl.flock`` on ``ROOT/.minilake.lock``: the kernel releases
it when the holder dies, so a lock left by a killed run is never a dead end; the file keeps the
holder's pid and command so that a second command can say who holds the root.

On an S3 root there is no kernel to release anything, so the lock is a lease: the object
``ROOT/.minilake.lock`` created only if absent (``If-None-Match: *``), holding pid, host,
command and an expiry, renewed by a thread while the run lives (each renewal conditional on the
lease being still the one it wrote, ``If-Match``). A second writer exits at once naming the
holder. A lease past its expiry (its run was killed, or its machine lost), or held by a process
of this same host that no longer exists, is taken over with a warning, again with ``If-Match``,
so that of two runs taking over one stale lease only one wins.

Within one process the lock is re-entrant (``run`` takes it, then ``split`` and ``ingest`` take
it again).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from minilake import storage

log = logging.getLogger(__name__)
_held: dict[str, tuple[object, int]] = {}     # lock path -> (descriptor or lease, depth)
LEASE_SECONDS = 60.0           # an S3 lease's life; renewed every third of it


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
def hold(root, command: str) -> Iterator[None]:
    """Hold ``root``'s lock for the duration of the block, or raise :class:`RootBusy`."""
    path = root / ".minilake.lock"
    if str(path) in _held:
        held, depth = _held[str(path)]
        _held[str(path)] = (held, depth + 1)
        try:
            yield
        finally:
            held, depth = _held[str(path)]
            _held[str(path)] = (held, depth - 1)
        return
    if storage.is_local(root):
        with _flock(root, path, command):
            yield
    else:
        with _lease(root, path, command):
            yield


@contextlib.contextmanager
def _flock(root: Path, path: Path, command: str) -> Iterator[None]:
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
    _held[str(path)] = (fd, 1)
    try:
        yield
    finally:
        del _held[str(path)]
        os.ftruncate(fd, 0)          # an empty file: released cleanly
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lease_seconds() -> float:
    return float(os.environ.get("MINILAKE_LEASE_SECONDS", LEASE_SECONDS))


def _lease_body(command: str, seconds: float, since: str) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(),
        "command": command or " ".join(sys.argv), "since": since,
        "expires": (now + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds"),
    }).encode()


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"({info.get('command', '?')}, since {info.get('since', '?')}, lease until "
            f"{info.get('expires', '?')})")


class _Lease:
    """A held lease and the thread that renews it (each renewal conditional on the lease
    being still the one it last wrote)."""

    def __init__(self, path, command: str, seconds: float, since: str, etag: str):
        self.path, self.command, self.seconds = path, command, seconds
        self.since, self.etag = since, etag
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, name="minilake-lease", daemon=True)
        self.thread.start()

    def _renew(self) -> None:
        while not self.stop.wait(self.seconds / 3):
            try:
                renewed = storage.replace_if(self.path, _lease_body(
                    self.command, self.seconds, self.since), self.etag)
                why = "another run took it over" if renewed is None else ""
            except Exception as error:                  # noqa: BLE001 - said, run goes on
                renewed, why = None, storage._short(error)
            if renewed is None:
                log.error("%s: could not renew the lease (%s); another run may take the "
                          "root over once it expires", storage.where(self.path), why)
            else:
                self.etag = renewed

    def release(self) -> None:
        self.stop.set()
        self.thread.join()
        if storage.etag(self.path) == self.etag:
            storage.remove(self.path)


@contextlib.contextmanager
def _lease(root, path, command: str) -> Iterator[None]:
    seconds = _lease_seconds()
    since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    body = _lease_body(command, seconds, since)
    etag = storage.create_exclusive(path, body)
    if etag is None:
        current = storage.read_with_etag(path)
        info = _parse(current[0]) if current else {}
        if current is not None and not _stale(info):
            raise RootBusy(f"{root} is in use by minilake {_describe(info)}; try again when "
                           f"it has finished")
        etag = (storage.replace_if(path, body, current[1]) if current is not None
                else storage.create_exclusive(path, body))
        if etag is None:
            again = storage.read_with_etag(path)
            raise RootBusy(f"{root} is in use by minilake "
                           f"{_describe(_parse(again[0]) if again else {})}; try again when "
                           f"it has finished")
        log.warning("%s: taking over the lease of a run that did not finish (%s)", root,
                    _describe(info))
    lease = _Lease(path, command, seconds, since, etag)
    _held[str(path)] = (lease, 1)
    try:
        yield
    finally:
        del _held[str(path)]
        lease.release()


def _stale(info: dict) -> bool:
    """A lease past its expiry, or held by a process of this host that is gone (a run killed
    here need not be waited out)."""
    expires = _expiry(info)
    if expires is None or expires <= dt.datetime.now(dt.UTC):
        return True
    if info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except (KeyError, TypeError, ValueError, PermissionError):
        return False
    return False


def _parse(data: bytes) -> dict:
    try:
        return json.loads(data.decode("utf-8") or "{}")
    except ValueError:
        return {}


def _expiry(info: dict) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(info["expires"])
    except (KeyError, TypeError, ValueError):
        return None
