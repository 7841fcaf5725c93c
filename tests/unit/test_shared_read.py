"""The job server's shared read (``/status``): requests that come while a read is under way
share it, a failed read fails those requests only, and nothing is kept after."""

from __future__ import annotations

import threading
import time

import pytest

from minilake.apps.server import _Shared


def test_requests_during_a_read_share_it_and_the_next_request_reads_again():
    calls, go = [], threading.Event()

    def read() -> bytes:
        calls.append(1)
        go.wait(60)
        return b"%d" % len(calls)

    shared = _Shared(read)
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(shared.get())) for _ in range(10)]
    threads[0].start()
    while shared.under_way is None:
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    time.sleep(0.2)                 # let them reach the read under way
    go.set()
    for t in threads:
        t.join(60)
    assert got == [b"1"] * 10 and len(calls) == 1
    assert shared.get() == b"2" and shared.under_way is None


def test_a_failed_read_fails_its_requests_and_the_next_one_reads_again():
    answers = iter([RuntimeError("the log is unreadable"), b"ok"])

    def read() -> bytes:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    shared = _Shared(read)
    with pytest.raises(RuntimeError, match="unreadable"):
        shared.get()
    assert shared.get() == b"ok"
