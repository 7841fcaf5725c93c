"""A test-only hook: kill or pause this process at a named point of the flow (issue 5's crash
harness, issue 32's paused writer).

With ``MINILAKE_CRASH_AT=name:n`` in the environment, the n-th time the code passes
``crashpoint("name")`` the process sends itself SIGKILL: no cleanup, no finally blocks, exactly
like a power cut. With ``MINILAKE_PAUSE_AT=name:n`` it sends itself SIGSTOP instead, what a long
GC pause, a suspended VM or a network partition does to a process: every thread stops until
someone sends SIGCONT. Without the variables a crash point costs two dictionary lookups. With
``MINILAKE_CRASH_ONCE=path`` too, only the process that creates ``path`` first is killed (a
Dask worker the nanny restarts, or the retry on another worker, then goes through).
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

_passed: Counter[tuple[str, str]] = Counter()
_lock = threading.Lock()             # sources are ingested on several threads
_SIGNALS = (("MINILAKE_CRASH_AT", signal.SIGKILL), ("MINILAKE_PAUSE_AT", signal.SIGSTOP))


def crashpoint(name: str) -> None:
    for variable, sent in _SIGNALS:
        target = os.environ.get(variable)
        if not target:
            continue
        point, _, nth = target.partition(":")
        if point != name:
            continue
        with _lock:
            _passed[variable, name] += 1
            if _passed[variable, name] == int(nth or 1) and _first():
                os.kill(os.getpid(), sent)


def _first() -> bool:
    marker = os.environ.get("MINILAKE_CRASH_ONCE")
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
