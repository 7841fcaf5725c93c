"""``minilake`` commands forked from a process that has imported the heavy libraries already.

The crash tests start a few hundred runs that are killed part-way: each paid an interpreter's
start-up and ~0.7 s of imports (pandas, pyarrow, delta-rs, DuckDB, pandera) before its first
step. Here a ``forkserver`` (the standard library's) imports those once per test worker, and
each run is a process forked from it: a real process, with its own pid, killed by a real
SIGKILL, that imports minilake itself afresh (so that settings read at import, such as
``MINILAKE_SIDE_BY_SIDE_MB``, are its own environment's) and runs the command line's own
entry point, ``minilake.apps.cli.run_and_exit``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

HEAVY = ["numpy", "pandas", "pyarrow", "pyarrow.compute", "pyarrow.dataset", "pyarrow.parquet",
         "deltalake", "duckdb", "pandera.pandas"]
_context = None
_running: set[Forked] = set()       # killed at the session's end if still there


def _server() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        # the runs' own libraries (an import that fails there is skipped without a word:
        # the runs would only be slower)
        _context.set_forkserver_preload(["support.forked_preload"])
    return _context


def _child(args: list[str], env: dict[str, str], cwd: str | None, out: str, err: str) -> None:
    """In the forked process: the environment, folder and standard streams of the command,
    then the command line itself (it ends the process with the command's exit status)."""
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    # as an interpreter's own on a pipe: stdout in blocks, stderr line by line (a traceback
    # printed just before a kill is in the file)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                      closefd=False)
    faulthandler.enable(file=sys.stderr, all_threads=True)   # SIGABRT: every thread's stack
    sys.argv = ["minilake", *args]
    from minilake.apps.cli import run_and_exit

    run_and_exit()


class Forked:
    """What :func:`start` returns, with the part of ``subprocess.Popen`` the tests use."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path | None, scratch: Path):
        self.args = [sys.executable, "-m", "minilake", *args]
        scratch.mkdir(parents=True, exist_ok=True)
        stem = scratch / f"forked-{uuid.uuid4().hex[:8]}"
        self._out, self._err = Path(f"{stem}.out"), Path(f"{stem}.err")
        self._process = _server().Process(target=_child, args=(
            list(args), env, None if cwd is None else str(cwd), str(self._out), str(self._err)))
        self._process.start()
        _running.add(self)
        self.pid = self._process.pid
        self.returncode: int | None = None
        # Signals go through a pidfd: they reach this process or none. It is the fork
        # server's child, not this process's: once it has ended and the server has reaped it
        # (before its exit status reaches us), its pid may be another process's already
        # (threads take pids too; this machine's 32,768 wrap many times in a suite), and a
        # kill by pid would reach that one (a paused run of another test, say).
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except ProcessLookupError:      # ended already
            self._pidfd = None

    def poll(self) -> int | None:
        self.returncode = self._process.exitcode
        if self.returncode is not None:
            _running.discard(self)
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sent: int) -> None:
        if self.poll() is None and self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sent)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        said = tuple(p.read_text(encoding="utf-8", errors="replace") for p in (self._out,
                                                                               self._err))
        for path in (self._out, self._err):
            path.unlink(missing_ok=True)
        return said


def start(*args: str, scratch: Path, cwd: Path | None = None, env: dict | None = None
          ) -> Forked:
    """``minilake ARGS`` in a forked process, its output kept in files under ``scratch``
    until read; ``env`` is added to this process's environment (None leaves a variable
    out)."""
    merged = {**os.environ, **(env or {})}
    return Forked(list(args), {k: v for k, v in merged.items() if v is not None}, cwd,
                  scratch)


def stop() -> None:
    """The fork server stopped and its socket's folder removed, if one was started (here, or
    by Dask for the workers of a cluster the tests started in this process): the end of the
    session removes its temporary folder, where they are (else the standard library's own
    clean-up at exit finds the folder gone, and says so with a traceback)."""
    global _context
    from multiprocessing import forkserver, util

    for left in list(_running):         # a test that failed between start and finish
        left.send_signal(signal.SIGKILL)
        left.wait(60)
    if getattr(forkserver._forkserver, "_forkserver_pid", None) is not None:
        forkserver._forkserver._stop()  # waits for every process holding its "alive" pipe
    for finalizer in list(util._finalizer_registry.values()):
        if getattr(finalizer, "_callback", None) is util._remove_temp_dir:
            finalizer()
    _context = None
_running: set[Forked] = set()       # killed at the session's end if still there
