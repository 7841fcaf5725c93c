"""A test-only hook: kill this process at a named point of the flow (issue 5's crash harness).

With ``MINILAKE_CRASH_AT=name:n`` in the environment, the n-th time the code passes
``crashpoint("name")`` the process sends itself SIGKILL: no cleanup, no finally blocks, exactly
like a power cut. Without the variable a crash point costs one dictionary lookup.
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
        if _passed[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
