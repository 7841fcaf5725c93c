"""The job server's jobs, in the background (docs/server.md, jobs).

A job (``run``, ``pull``, ``export``) is a record under the root, ``jobs/<id>.json``, written
at each change of state (queued, running, then succeeded, failed or cancelled), and its log,
``jobs/<id>.log``: the lines the job said and the warnings minilake logged while it ran. One
thread runs the jobs one at a time, in the order they came; the root's lock is taken by the
job itself, as by any command, so a writer from elsewhere still makes it fail with the holder
named.

A job cancelled while queued never starts; while running, it is asked to stop at the next
boundary a ``run`` checks (a file's start, each move of the split, the marts), as Ctrl-C asks
the command line: what was applied stays, nothing is half-applied (docs/guarantees.md). A pull
or an export has no such boundary and finishes. The records outlive the server: at start, a
job a server left queued or running (it died, or was stopped) is marked failed, with when and
why; a new ``run`` finishes what a killed run left, as after any crash. One server per root.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from minilake import stopping
from minilake.lake import storage
from minilake.lake.layout import Layout

log = logging.getLogger(__name__)

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
ID = re.compile(r"[0-9a-f]{32}")
LISTED = 100                            # GET /jobs: the latest jobs, newest first


class JobFailed(Exception):
    """A job's one-line failure, with the HTTP status its synchronous form answers."""

    def __init__(self, status: int, line: str):
        super().__init__(line)
        self.status = status


@dataclass
class Job:
    """A job as its record holds it (``GET /jobs/{id}``)."""

    id: str
    kind: str
    params: dict
    state: str = "queued"
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    result: dict | None = None
    error: str | None = None
    status: int | None = None           # the HTTP status of a failure (409, 422, 502, 500)
    cancel_requested: bool = False
    lines: list[str] = field(default_factory=list, repr=False)

    def record(self) -> dict:
        """The record without its log (``GET /jobs/{id}/log`` has that)."""
        return {k: v for k, v in asdict(self).items() if k != "lines"}

    @property
    def location(self) -> str:
        return f"/jobs/{self.id}"


Work = Callable[[str, dict, Callable[[str], None]], dict]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class _Said(logging.Handler):
    """minilake's log records, while a job runs, as lines of its log."""

    def __init__(self, say: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.say = say
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.say(self.format(record).splitlines()[0])
        except Exception:                   # the job's log file: never the logger's caller
            self.handleError(record)


class Jobs:
    """The jobs of one root: their records, the queue, and the one thread that runs them
    with ``work(kind, params, say)`` (which returns the job's result, or raises
    :class:`JobFailed` or :class:`minilake.stopping.Interrupted`)."""

    def __init__(self, layout: Layout, work: Work):
        self.folder, self.work = layout.root / "jobs", work
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()           # the records in memory
        self._writing = threading.Lock()        # their files (one writer at a time)
        # held by the worker for a job's whole run, and by a check that the root is free
        # (:meth:`free`): the two never hold the root's lock at once in this process
        self._gate = threading.Lock()
        self._done: dict[str, threading.Event] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._asking: stopping.Asking | None = None
        self._recover()
        self._thread = threading.Thread(target=self._serve, name="minilake jobs", daemon=True)
        self._thread.start()

    # -- records

    def _recover(self) -> None:
        """Every record under the root; a job left queued or running by a server that is
        gone is failed, saying so."""
        for path in storage.files(self.folder, "*.json"):
            try:
                job = Job(**json.loads(path.read_bytes()))
            except (ValueError, TypeError) as error:
                log.warning("%s: not a job record (%s); left as it is", path, error)
                continue
            if job.state not in FINISHED:
                job.error = (f"the job server stopped while the job was {job.state}; a new run "
                             f"job finishes what a run left")
                job.state, job.status, job.finished_at = "failed", 500, _now()
                self._save(job)
            self.jobs[job.id] = job
            self._done[job.id] = threading.Event()
            self._done[job.id].set()

    def _save(self, job: Job) -> None:
        with self._lock:
            data = json.dumps(job.record(), indent=1).encode()
        with self._writing:
            storage.write_bytes(self.folder / f"{job.id}.json", data)

    def _said(self, job: Job, line: str) -> None:
        with self._lock:
            job.lines.append(line)
            text = "".join(f"{one}\n" for one in job.lines)
        with self._writing:
            storage.write_bytes(self.folder / f"{job.id}.log", text.encode())

    def log_of(self, job: Job) -> list[str]:
        """The job's log lines: as kept while this server ran it, else as its file holds."""
        if job.lines or job.state == "queued":
            return list(job.lines)
        try:
            return (self.folder / f"{job.id}.log").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    # -- what the routes do

    def busy(self) -> bool:
        """Whether a job of this server is queued or running."""
        with self._lock:
            return any(job.state not in FINISHED for job in self.jobs.values())

    def free(self, check: Callable[[], None]) -> None:
        """Run ``check`` (that the root's lock is free: it raises if another process holds
        it) when no job of this server is queued or running, with the worker kept from
        starting one meanwhile; else nothing (a new job waits its turn)."""
        if self.busy() or not self._gate.acquire(blocking=False):
            return
        try:
            if not self.busy():
                check()
        finally:
            self._gate.release()

    def submit(self, kind: str, params: dict) -> Job:
        job = Job(uuid.uuid4().hex, kind, params, created_at=_now())
        with self._lock:
            self.jobs[job.id] = job
            self._done[job.id] = threading.Event()
        self._save(job)
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id) if ID.fullmatch(job_id) else None

    def latest(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.created_at, reverse=True)[:LISTED]

    def wait(self, job: Job, timeout: float | None = None) -> Job:
        self._done[job.id].wait(timeout)
        return job

    def cancel(self, job: Job) -> Job:
        """Cancel ``job``: at once if queued, at the next boundary if running (its state
        says ``running`` with ``cancel_requested`` until then); a finished job raises
        :class:`JobFailed` (409)."""
        with self._lock:
            if job.state in FINISHED:
                raise JobFailed(409, f"job {job.id} has {job.state} already")
            job.cancel_requested = True
            if job.state == "queued":
                job.state, job.finished_at = "cancelled", _now()
                job.error, job.status = "cancelled before it started", 409
                self._done[job.id].set()
            elif self._asking is not None:
                self._asking.ask()
        self._save(job)
        return job

    # -- the thread

    def _serve(self) -> None:
        while True:
            job = self.jobs[self._queue.get()]
            try:
                with self._gate:
                    self._run(job)
            except Exception as error:      # the thread goes on to the next job whatever
                log.exception("job %s (%s): its record could not be kept", job.id, job.kind)
                with self._lock:
                    if job.state not in FINISHED:
                        job.state, job.status, job.finished_at = "failed", 500, _now()
                        job.error = f"internal error ({type(error).__name__}); see the " \
                                    f"server's log"
                self._done[job.id].set()

    def _run(self, job: Job) -> None:
        handler = _Said(lambda line: self._said(job, line))
        watched = logging.getLogger("minilake")
        with stopping.asking(f"cancelled by DELETE /jobs/{job.id}") as asking:
            with self._lock:
                if job.state != "queued":           # cancelled while it waited
                    return
                job.state, job.started_at = "running", _now()
                self._asking = asking
            self._save(job)
            watched.addHandler(handler)
            try:
                job.result = self.work(job.kind, job.params, lambda line: self._said(job, line))
                job.state = "succeeded"
            except stopping.Interrupted as stopped:
                job.state, job.error, job.status = "cancelled", str(stopped), 409
            except JobFailed as failed:
                job.state, job.error, job.status = "failed", str(failed), failed.status
            except Exception as error:          # a bug: said in one line, logged whole
                log.exception("job %s (%s) failed", job.id, job.kind)
                job.state, job.status = "failed", 500
                job.error = f"internal error ({type(error).__name__}); see the server's log"
            finally:
                watched.removeHandler(handler)
                with self._lock:
                    self._asking = None
                    job.finished_at = _now()
        if job.error:
            self._said(job, job.error)
        self._save(job)
        self._done[job.id].set()
