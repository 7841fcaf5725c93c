"""A test-only hook: kill this process at a named point of the flow (issue 5's crash harness).

With ``MINILAKE_CRASH_AT=name:n`` in the environment, the n-th time the code passes
``crashpoint("name")`` the process sends itself SIGKILL: no cleanup, no finally blocks, exactly
like a power cut. Without the variable a crash point costs one dictionary lookup. With
``MINILAKE_CRASH_ONCE=path`` too, only the process that creates ``path`` first is killed (a
Dask worker the nanny restarts, or the retry on another worker, then goes through).
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

_passed: Counter[str] = Counter()
_lock = threading.Lock()             # sources are ingested on several threads


def crashpoint(name: str) -> None:
    target = os.environ.get("MINILAKE_CRASH_AT")
    if not target:
        return
    point, _, nth = target.partition(":")
    if point != name:
        return
    with _lock:
        _passed[name] += 1
        if _passed[name] == int(nth or 1) and _first():
            os.kill(os.getpid(), signal.SIGKILL)


def _first() -> bool:
    marker = os.environ.get("MINILAKE_CRASH_ONCE")
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
