"""Stopping a command when asked (Ctrl-C, or a scheduler's SIGTERM) at the next boundary.

A file is applied in one commit and a killed run is finished by the next one, so stopping is
always safe; stopping *well* is stopping between files: the command line installs
:func:`on_signals`, the first SIGINT or SIGTERM only marks the request, and the work checks
:func:`check` (in any thread) where a file begins (and before each move of the split, each
erasure request, the marts), raising :class:`Interrupted` there. A second signal stops the
process at once (exit status 128 + the signal): what it was doing is finished by the next run,
as after a crash. The job server asks the same way without a signal (:func:`asking`: a job
cancelled while it runs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

_requested: list[int] = []        # the signal that asked, if one did
_handled: list[int] = []          # the signals whose handler has run (the second stops now)
_pipe: list[int] = []             # the interpreter's wakeup pipe while on_signals() holds
_by: list[str] = []               # who asked, when it was no signal (asking)


class Interrupted(Exception):
    """The command was asked to stop; raised at a boundary, nothing half-applied."""

    def __init__(self, signum: int, doing: str, by: str | None = None):
        self.signum = signum
        super().__init__(f"interrupted ({by or signal.Signals(signum).name}): stopped before "
                         f"{doing}; what was applied before is kept (see above); run again to "
                         f"go on")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def check(doing: str) -> None:
    """Raise :class:`Interrupted` if a stop was asked for; ``doing`` names what comes next.

    Any thread may ask. Python runs a signal's handler in the main thread, and only once that
    thread wakes (it may be waiting for the sources' threads), so the signal is also read
    here from the pipe the interpreter writes each signal's number to as it arrives."""
    if not _requested and _pipe:
        with contextlib.suppress(BlockingIOError, OSError):
            arrived = os.read(_pipe[0], 1)
            if arrived:
                _requested.append(arrived[0])
    if _requested:
        raise Interrupted(_requested[0], doing, _by[0] if _by else None)


class Asking:
    """What :func:`asking` yields: :meth:`ask` marks the stop request ``by`` names."""

    def __init__(self, by: str):
        self.by = by

    def ask(self) -> None:
        if not _requested:
            _by[:] = [self.by]
            _requested.append(signal.SIGTERM)


@contextlib.contextmanager
def asking(by: str) -> Iterator[Asking]:
    """For the block's duration, the work may be asked to stop at its next boundary from any
    thread (``ask()``), as SIGTERM would, its :class:`Interrupted` naming ``by`` ("cancelled
    by DELETE /jobs/<id>"); a request left when the block ends is dropped. One block at a
    time in a process (the job server runs one job at a time)."""
    try:
        yield Asking(by)
    finally:
        _requested.clear()
        _by.clear()


def _asked(signum: int, frame) -> None:
    _handled.append(signum)
    if len(_handled) > 1:                  # the second time: now
        print(f"\n{signal.Signals(signum).name} again: stopping now; the next run finishes "
              f"what was under way", file=sys.stderr, flush=True)
        os._exit(128 + signum)
    if not _requested:
        _requested.append(signum)
    print(f"\n{signal.Signals(signum).name}: stopping after the file under way "
          f"(again to stop at once)", file=sys.stderr, flush=True)


@contextlib.contextmanager
def on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM mark a stop request for the duration of the block (in the main
    thread; elsewhere nothing is installed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, _asked) for s in (signal.SIGINT, signal.SIGTERM)}
    reader, writer = os.pipe()
    os.set_blocking(reader, False)
    os.set_blocking(writer, False)
    earlier = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
    _pipe[:] = [reader]
    try:
        yield
    finally:
        signal.set_wakeup_fd(earlier)
        _pipe.clear()
        os.close(reader)
        os.close(writer)
        for s, handler in before.items():
            signal.signal(s, handler)
        _requested.clear()
        _handled.clear()
