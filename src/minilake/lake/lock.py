"""One writing command per root at a time (docs/guarantees.md), and the fence on every write it
makes
(docs/guarantees.md; docs/guarantees.md).

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

A lease can be lost while its holder lives: a process paused (a long GC, a suspended VM, a
network partition) past its expiry wakes up to find another run holding the root. So holding is
not enough; every write is fenced:

- a run that holds a root has a :class:`Claim`. Every write under the root through
  :mod:`minilake.lake.storage` first asks the claim whether the root is still this run's (on S3 the
  lease object still carries the ETag this run last wrote; locally the lock file is still the
  one this process locked), and the run stops with :class:`LeaseLost`, one line, the moment it
  is not. The renewal thread marks the claim lost as soon as a renewal is refused.
- a check just before a write cannot close the gap between the check and the write, so every
  Delta commit also carries Delta's transaction identifier (``txn``) with a version made of the
  claim's *epoch* (higher for every run that takes the root, kept in the lock itself) and a
  count of the run's commits to that table. A table that holds a txn version at or above the
  one a commit carries refuses it, and delta-rs refuses a commit when a commit made since the
  snapshot it was based on carries the same application id (minilake.lake.delta).

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
import time
from collections.abc import Iterator
from pathlib import Path

from minilake.lake import storage

log = logging.getLogger(__name__)
_held: dict[str, tuple[Claim, int]] = {}     # lock path -> (claim, depth)
LEASE_SECONDS = 60.0           # an S3 lease's life; renewed every third of it
VERSIONS_PER_EPOCH = 10**6     # a txn version is epoch * VERSIONS_PER_EPOCH + the run's count


class RootBusy(Exception):
    """Another process holds the root."""


class LeaseLost(RootBusy):
    """This run no longer holds its root: another run took it over (or wrote a table) since
    this run took it. Raised before the write it would have made."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _epoch_after(info: dict) -> int:
    """The epoch of a run taking a root whose lock said ``info``: above the last one, and
    the clock's milliseconds if they are higher (a lock made afresh still counts up)."""
    try:
        previous = int(info.get("epoch", 0))
    except (TypeError, ValueError):
        previous = 0
    return max(_now_ms(), previous + 1)


class Claim:
    """What a run holding a root has: the epoch its commits carry, and the check that the
    root is still its own (:meth:`fence`)."""

    def __init__(self, root, holder: _Flock | _Lease):
        self.root, self.holder = root, holder
        self.text = str(root).rstrip("/")
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        # the one handle on each table this run reads or writes (minilake.lake.delta.delta)
        self.handles: dict[str, object] = {}
        # whether a table is at a path, as this run last found or made it (a table comes and
        # goes under a held root only by the run's own commits and removals:
        # minilake.lake.delta.exists, made, and forget below)
        self.tables: dict[str, bool] = {}
        # each log's rows as this run last read or wrote them, by the log's version
        # (minilake.lake.logs.Log.read)
        self.logs: dict[str, tuple[int, object]] = {}
        # the archive folders this run listed, as it read and changed them
        # (minilake.lake.storage.entries): the run state is made of them
        # (minilake.lake.unchanged)
        self.listings: dict[str, tuple[dict, dict]] = {}
        # the id of the ``run`` holding the root (its report's name: docs/quality.md), if one
        self.run: str | None = None

    @property
    def epoch(self) -> int:
        return self.holder.epoch

    @property
    def since_ms(self) -> int:
        """When this run took the root (ms since 1970): what it finds written before then
        is no write of a run still under way."""
        return self.holder.since_ms

    def fence(self, doing: str) -> None:
        """Raise :class:`LeaseLost` unless the root is still this run's; ``doing`` says what
        the run was about to do ("committing customer/customer_20241010.csv")."""
        why = self.holder.lost()
        if why:
            raise self.lost(doing, why)

    def lost(self, doing: str, why: str) -> LeaseLost:
        what = "lease" if isinstance(self.holder, _Lease) else "lock"
        return LeaseLost(f"lost the {what} of {self.text} to {self.holder.now_held_by()} "
                         f"({why}); stopped before {doing}; nothing of it applied")

    def forget(self, folder: str) -> None:
        """What this run knows of the tables and folders at or under ``folder`` (removed),
        let go."""
        for known in (self.handles, self.tables, self.logs, self.listings):
            # a copy of the keys first: another source's thread may add one meanwhile
            for path in [p for p in list(known) if p == folder or p.startswith(folder + "/")]:
                known.pop(path, None)

    def next_version(self, table: str) -> int:
        """The txn version of this run's next commit to ``table``: above every version an
        earlier run (lower epoch) wrote, and above this run's own earlier commits."""
        with self._lock:
            count = self._counts.get(table, 0) + 1
            if count >= VERSIONS_PER_EPOCH:
                raise RuntimeError(f"{table}: more than {VERSIONS_PER_EPOCH - 1} commits in "
                                   f"one run")
            self._counts[table] = count
        return self.epoch * VERSIONS_PER_EPOCH + count


def run_id(started: dt.datetime) -> str:
    """A run's id: when it started, UTC, to the microsecond (sorts as the runs ran)."""
    return started.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def claim_of(path) -> Claim | None:
    """The claim of the root ``path`` lies under, if this process holds it."""
    text = str(path)
    for claim, _ in list(_held.values()):
        if text == claim.text or text.startswith(claim.text + "/"):
            return claim
    return None


def fence(path, doing: str) -> None:
    """Stop with :class:`LeaseLost` before ``doing`` unless the root ``path`` lies under is
    still this process's (nothing to check where this process holds no root): what a run
    checks at each file's boundary, besides the fence on every write."""
    claim = claim_of(path)
    if claim is not None:
        claim.fence(doing)


@contextlib.contextmanager
def hold(root, command: str) -> Iterator[Claim]:
    """Hold ``root``'s lock for the duration of the block, or raise :class:`RootBusy`; every
    write under the root made through :mod:`minilake.lake.storage` meanwhile is fenced."""
    path = root / ".minilake.lock"
    key = str(path)
    if key in _held:
        claim, depth = _held[key]
        _held[key] = (claim, depth + 1)
        try:
            yield claim
        finally:
            claim, depth = _held[key]
            _held[key] = (claim, depth - 1)
        return
    holder = (_Flock(root, path, command) if storage.is_local(root)
              else _Lease.take(root, path, command))
    claim = Claim(root, holder)
    _held[key] = (claim, 1)
    storage.holders[claim.text] = claim
    try:
        yield claim
    finally:
        storage.holders.pop(claim.text, None)
        del _held[key]
        holder.release()


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process"
    return (f"pid {info.get('pid', '?')} ({info.get('command', '?')}, since "
            f"{info.get('since', '?')})")


def _body(command: str, since: str, epoch: int, **more) -> bytes:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "command": command or " ".join(sys.argv), "since": since,
                       "epoch": epoch, **more}).encode()


def _since() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class _Flock:
    """A local root's lock: ``flock`` on the lock file, which keeps the holder's pid and
    command, and the epoch (kept when released, so the next run's is higher)."""

    def __init__(self, root: Path, path: Path, command: str):
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RootBusy(f"{root} is in use by minilake {_holder(path)}; try again when it "
                           f"has finished") from None
        previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
        info = _parse(previous.encode())
        if previous and not info.get("released"):
            log.warning("%s: taking over the lock left by a run that did not finish (%s)",
                        root, _holder(path))
        self.fd, self.epoch, self.since_ms = fd, _epoch_after(info), _now_ms()
        self.command, self.since = command, _since()
        self._write(_body(command, self.since, self.epoch))
        self.inode = os.fstat(fd).st_ino

    def _write(self, data: bytes) -> None:
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, data)

    def lost(self) -> str | None:
        try:
            same = os.stat(self.path).st_ino == self.inode
        except FileNotFoundError:
            same = False
        return None if same else "its lock file was removed or replaced"

    def now_held_by(self) -> str:
        return f"minilake {_holder(self.path)}"

    def release(self) -> None:
        self._write(_body(self.command, self.since, self.epoch, released=_since()))
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _lease_seconds() -> float:
    return float(os.environ.get("MINILAKE_LEASE_SECONDS", LEASE_SECONDS))


def _describe(info: dict) -> str:
    if not info:
        return "nobody (the lease object is gone)"
    who = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    if info.get("released"):
        return (f"{who} ({info.get('command', '?')}, since {info.get('since', '?')}, "
                f"finished at {info['released']})")
    return (f"{who} ({info.get('command', '?')}, since {info.get('since', '?')}, lease until "
            f"{info.get('expires', '?')})")


class _Lease:
    """A held S3 lease and the thread that renews it (each renewal conditional on the lease
    being still the one it last wrote). The lease object stays when released, marked so, and
    keeps the epoch for the next run."""

    def __init__(self, path, command: str, seconds: float, since: str, epoch: int,
                 etag: str):
        self.path, self.command, self.seconds = path, command, seconds
        self.since, self.epoch, self.etag = since, epoch, etag
        self.since_ms = _now_ms()
        self.expires = time.monotonic() + seconds
        self.gone: str | None = None
        self._mutex = threading.Lock()         # a renewal and a check see one ETag
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_while_held, name="minilake-lease",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def take(cls, root, path, command: str) -> _Lease:
        seconds, since = _lease_seconds(), _since()
        epoch = _epoch_after({})
        etag = storage.create_exclusive(path, cls._body(command, since, epoch, seconds))
        if etag is None:
            current = storage.read_with_etag(path)
            info = _parse(current[0]) if current else {}
            if current is not None and not info.get("released") and not _stale(info):
                raise RootBusy(f"{root} is in use by minilake {_describe(info)}; try again "
                               f"when it has finished")
            epoch = _epoch_after(info)
            body = cls._body(command, since, epoch, seconds)
            etag = (storage.replace_if(path, body, current[1]) if current is not None
                    else storage.create_exclusive(path, body))
            if etag is None:
                again = storage.read_with_etag(path)
                raise RootBusy(f"{root} is in use by minilake "
                               f"{_describe(_parse(again[0]) if again else {})}; try again "
                               f"when it has finished")
            if current is not None and not info.get("released"):
                log.warning("%s: taking over the lease of a run that did not finish (%s)",
                            root, _describe(info))
        return cls(path, command, seconds, since, epoch, etag)

    @staticmethod
    def _body(command: str, since: str, epoch: int, seconds: float) -> bytes:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
        return _body(command, since, epoch, expires=expires.isoformat(timespec="seconds"))

    def _renew(self) -> None:
        """Extend the lease (If-Match); mark it gone if another run took it over."""
        with self._mutex:
            if self.gone:
                return
            began = time.monotonic()
            renewed = storage.replace_if(self.path, self._body(
                self.command, self.since, self.epoch, self.seconds), self.etag)
            if renewed is None:
                # said once, by the fence that stops the run before its next write
                self.gone = "another run took it over"
                log.info("%s: could not renew the lease (another run took it over); this "
                         "run stops before its next write", storage.where(self.path))
            else:
                self.etag, self.expires = renewed, began + self.seconds

    def _renew_while_held(self) -> None:
        while not self._stop.wait(self.seconds / 3) and not self.gone:
            try:
                self._renew()
            except Exception as error:                  # noqa: BLE001 - said, tried again
                log.warning("%s: could not renew the lease (%s); trying again",
                            storage.where(self.path), storage._short(error))

    def lost(self) -> str | None:
        """Why the root is no longer this run's, or None: the lease object must still be
        the one this run last wrote; one past its expiry is renewed first."""
        if self.gone:
            return self.gone
        if time.monotonic() >= self.expires:
            self._renew()
            return self.gone
        with self._mutex:
            if storage.etag(self.path) != self.etag:
                self.gone = "another run took it over"
        return self.gone

    def now_held_by(self) -> str:
        current = storage.read_with_etag(self.path)
        return _describe(_parse(current[0]) if current else {})

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        if not self.gone:
            storage.replace_if(self.path, _body(self.command, self.since, self.epoch,
                                                released=_since()), self.etag)


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
        parsed = json.loads(data.decode("utf-8") or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _expiry(info: dict) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(info["expires"])
    except (KeyError, TypeError, ValueError):
        return None
