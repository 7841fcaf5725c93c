"""Stopping a command when asked (Ctrl-C, or a scheduler's SIGTERM) at the next boundary.

A file is applied in one commit and a killed run is finished by the next one, so stopping is
always safe; stopping *well* is stopping between files: the command line installs
:func:`on_signals`, the first SIGINT or SIGTERM only marks the request, and the work checks
:func:`check` where a file begins (and before each move of the split, each erasure request,
the marts), raising :class:`Interrupted` there. A second signal stops the process at once
(exit status 128 + the signal): what it was doing is finished by the next run, as after a
crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

_requested: list[int] = []        # the signal that asked, if one did


class Interrupted(Exception):
    """The command was asked to stop; raised at a boundary, nothing half-applied."""

    def __init__(self, signum: int, doing: str):
        self.signum = signum
        super().__init__(f"interrupted ({signal.Signals(signum).name}): stopped before "
                         f"{doing}; what was applied before is kept (see above); run again to "
                         f"go on")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def check(doing: str) -> None:
    """Raise :class:`Interrupted` if a stop was asked for; ``doing`` names what comes next."""
    if _requested:
        raise Interrupted(_requested[0], doing)


def _asked(signum: int, frame) -> None:
    if _requested:                         # the second time: now
        print(f"\n{signal.Signals(signum).name} again: stopping now; the next run finishes "
              f"what was under way", file=sys.stderr, flush=True)
        os._exit(128 + signum)
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
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        _requested.clear()
