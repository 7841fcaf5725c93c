"""Running minilake's command line from the tests.

A run that hangs fails its test with every thread's stack (faulthandler prints them on
SIGABRT) instead of a bare timeout: CI once saw a run hang with nothing to show where.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import forked

# seconds: a hang guard, not a time limit (the slowest command the tests run takes a few
# seconds; a loaded machine may take many times that, and must not fail a test for it)
HUNG_AFTER = 600


def start(*args: str, cwd: Path | None = None, env: dict | None = None, fresh: bool = False
          ) -> subprocess.Popen | forked.Forked:
    """``python -m minilake ARGS`` started, its output captured as text; ``env`` is added to
    this process's environment (a variable given as None is left out).

    The process is forked from a server that has imported the heavy libraries already
    (:mod:`support.forked`: a real process with its own pid and signals, ~1 s quicker to start
    than an interpreter, which the suite's few hundred commands add up). With ``fresh``, it
    is a new interpreter, as a shell starts it: for a command whose output is read while it
    runs; a run on the Dask engine without ``--cluster``, which starts interpreters of its
    own (a LocalCluster), is one too."""
    if not fresh and not ("dask" in args and "--cluster" not in args):
        return forked.start(*args, scratch=Path(tempfile.gettempdir()) / "forked", cwd=cwd,
                            env=env)
    merged = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "minilake", *args], cwd=cwd,
                            env={k: v for k, v in merged.items() if v is not None},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen | forked.Forked, hung_after: float = HUNG_AFTER
           ) -> subprocess.CompletedProcess:
    """Wait for ``process``; if it is still running after ``hung_after`` seconds, fail with
    the stacks of its threads."""
    try:
        out, err = process.communicate(timeout=hung_after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        _, err = process.communicate(timeout=60)
        pytest.fail(f"minilake {' '.join(process.args[3:])} hung for {hung_after} s; "
                    f"its threads:\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def minilake(*args: str, cwd: Path | None = None, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    """Run ``python -m minilake ARGS`` to the end."""
    return finish(start(*args, cwd=cwd, env=env))


def here(*args: str) -> subprocess.CompletedProcess:
    """``minilake ARGS`` to its end in this process: the command line's own code
    (``minilake.apps.cli.main``) without an interpreter's start-up (~0.7 s a command, forked or
    not), for a command whose process itself is not what a test is about. Its exit status and
    what it wrote: stderr holds its warnings and errors logged and any thread's uncaught
    exception, as a process's would."""
    from minilake.apps.cli import main

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    hook = threading.excepthook
    threading.excepthook = threading.__excepthook__        # prints to sys.stderr: err
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        threading.excepthook = hook
        logging.getLogger().removeHandler(handler)
    return subprocess.CompletedProcess(["minilake", *args], code, out.getvalue(),
                                       err.getvalue())


@contextlib.contextmanager
def sample_api(landing: Path, world: Path, token: str) -> Iterator[tuple[Path, str]]:
    """``python -m minilake serve-sample-api`` on a free port of 127.0.0.1, over a copy of
    ``landing`` made in ``world``, with small pages (a day takes several): (world, its URL)."""
    shutil.copytree(landing, world / "landing_zone")
    server = subprocess.Popen(
        [sys.executable, "-m", "minilake", "serve-sample-api", "--root", str(world),
         "--port", "0", "--page-size", "100"], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "MINILAKE_API_TOKEN": token})
    try:
        first = server.stdout.readline()
        assert first.startswith("sample API: serving"), first
        yield world, first.split(" on ")[1].strip()
    finally:
        server.terminate()
        server.wait(timeout=10)
