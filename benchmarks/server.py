"""The job server's table reads and its behaviour under load (issue 42, docs/server.md).

    .venv/bin/python benchmarks/server.py [--scale 10] [--days 7] [--clients 50] [--seconds 60]

A world of ``--days`` days at ``--scale`` times the sample (5,000 customers a scale) is
generated, and every day but the last applied by one run. Then ``minilake serve`` is started
on it (its memory sampled every 10 ms with psutil) and, in turn:

1. the sales table paged with cursors, 1,000 rows a page, to its end: the median time of the
   first five pages against the last five (the target: within 2x);
2. the whole sales table streamed as Arrow, then as Parquet, each read to its end and
   dropped: the server's peak memory during the stream over its memory before, against the
   table's size in Arrow (flat: what a row group holds, whatever the table's size);
3. the held day landed, a run job posted, and ``--clients`` threads for ``--seconds`` reading
   at once (each in turn: a cursor page of sales, a cursor page of customer, ``/status``):
   every answer's status, and each route's latencies. Any 5xx fails the benchmark (exit
   status 1). ``--seconds 0`` leaves this step out.

Only 127.0.0.1; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

import minilake
from minilake.generate import generate

TOKEN = secrets.token_hex(16)
MB = 1 << 20


class Sampled(threading.Thread):
    """The peak RSS of a process (and its children) over a stretch of time."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process, self.peak, self.running = psutil.Process(pid), 0, True

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in [self.process, *self.process.children(True)])

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.01)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def started(root: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "minilake", "serve", "--root", str(root),
                               "--port", "0"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "MINILAKE_SERVER_TOKEN": TOKEN})
    first = server.stdout.readline()
    if not first.startswith("minilake job server: serving"):
        server.kill()
        raise SystemExit(f"the server did not start: {first!r}")
    return server, first.rsplit(" on ", 1)[1].strip()


def paging(client: httpx.Client) -> dict:
    took, token, rows = [], None, 0
    while True:
        began = time.perf_counter()
        answer = client.get("/tables/sales", params={"cursor": token} if token else
                            {"page_size": 1000})
        answer.raise_for_status()
        rows += len(answer.json())
        took.append(time.perf_counter() - began)
        token = answer.headers.get("minilake-next-cursor")
        if not token:
            break
    first, last = statistics.median(took[:5]), statistics.median(took[-5:])
    return {"pages": len(took), "rows": rows, "first_ms": first * 1000,
            "last_ms": last * 1000, "ratio": last / first}


def streaming(client: httpx.Client, server: subprocess.Popen, form: str) -> dict:
    sampler = Sampled(server.pid)
    before = sampler.rss()
    sampler.start()
    began, size = time.perf_counter(), 0
    with client.stream("GET", "/tables/sales", params={"format": form},
                       headers={"Accept-Encoding": "identity"}) as answer:
        answer.raise_for_status()
        for piece in answer.iter_raw():
            size += len(piece)
    seconds, peak = time.perf_counter() - began, sampler.stop()
    return {"format": form, "seconds": seconds, "mb": size / MB,
            "rss_before_mb": before / MB, "rss_peak_mb": peak / MB,
            "rss_growth_mb": (peak - before) / MB}


ROUTES = ("sales page", "customer page", "status")


def loaded(url: str, clients: int, seconds: float) -> dict:
    """``clients`` threads, each in turn reading a cursor page of sales (following the
    cursors, starting again at the end), a cursor page of customer, and the status, for
    ``seconds``: the answers' statuses and each route's latencies."""
    statuses: Counter[int] = Counter()
    latencies: dict[str, list[float]] = {r: [] for r in ROUTES}
    lock, stop = threading.Lock(), time.monotonic() + seconds

    def client_loop() -> None:
        cursors: dict[str, str | None] = {"sales": None, "customer": None}
        with httpx.Client(base_url=url, timeout=600,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            while time.monotonic() < stop:
                for route in ROUTES:
                    table = route.split()[0]
                    path, params = (("/status", {}) if route == "status" else (
                        f"/tables/{table}", {"cursor": cursors[table]} if cursors[table]
                        else {"page_size": 1000}))
                    began = time.perf_counter()
                    try:
                        answer = client.get(path, params=params)
                        status = answer.status_code
                    except httpx.HTTPError:
                        status = 0
                    with lock:
                        statuses[status] += 1
                        latencies[route].append(time.perf_counter() - began)
                    if route != "status" and status == 200:
                        cursors[table] = answer.headers.get("minilake-next-cursor")
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def at(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
    every = [v for values in latencies.values() for v in values]
    return {"requests": len(every), "statuses": dict(statuses),
            "p50_ms": at(every, 0.50), "p99_ms": at(every, 0.99), "max_ms": max(every) * 1000,
            "routes": {r: {"requests": len(v), "p50_ms": at(v, 0.5), "p99_ms": at(v, 0.99)}
                       for r, v in latencies.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--work", default=None, help="work folder to keep (default: a temp)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="minilake-server-bench-"))
    print(f"# {dt.date.today()} on {platform.node()}: {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; scale {args.scale:g}, {args.days} days, "
          f"{args.clients} clients for {args.seconds:g} s", flush=True)
    try:
        root = work / "root"
        generate(root, days=args.days, customers=int(5000 * args.scale), landing_only=True)
        last = max(p.stem.split("_")[-1] for p in (root / "landing_zone").iterdir())
        (work / "held").mkdir()
        for path in (root / "landing_zone").glob(f"*{last}*"):
            shutil.move(path, work / "held" / path.name)
        minilake.init(root)
        subprocess.run([sys.executable, "-m", "minilake", "run", "--root", str(root)],
                       check=True, stdout=subprocess.DEVNULL)
        server, url = started(root)
        try:
            with httpx.Client(base_url=url, timeout=600,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                paged = paging(client)
                print(f"cursor pages: {paged['pages']} pages, {paged['rows']} rows; first "
                      f"{paged['first_ms']:.1f} ms, last {paged['last_ms']:.1f} ms "
                      f"(x{paged['ratio']:.2f}, target <= 2)", flush=True)
                for form in ("arrow", "parquet"):
                    s = streaming(client, server, form)
                    print(f"stream {form}: {s['mb']:.0f} MB in {s['seconds']:.1f} s; server "
                          f"RSS {s['rss_before_mb']:.0f} MB before, peak "
                          f"{s['rss_peak_mb']:.0f} MB (+{s['rss_growth_mb']:.0f} MB)",
                          flush=True)
                if args.seconds <= 0:           # the reads alone
                    return
                for path in (work / "held").iterdir():
                    shutil.move(path, root / "landing_zone" / path.name)
                job = client.post("/jobs/run").json()
                load = loaded(url, args.clients, args.seconds)
                deadline = time.monotonic() + 3600
                while client.get(f"/jobs/{job['id']}").json()["state"] in ("queued", "running"):
                    if time.monotonic() > deadline:
                        raise SystemExit("the run job did not finish within an hour")
                    time.sleep(0.5)
                state = client.get(f"/jobs/{job['id']}").json()
            print(f"load: {load['requests']} requests by {args.clients} clients in "
                  f"{args.seconds:g} s, statuses {load['statuses']}; latency p50 "
                  f"{load['p50_ms']:.0f} ms, p99 {load['p99_ms']:.0f} ms, max "
                  f"{load['max_ms']:.0f} ms; the run job {state['state']} "
                  f"({state['started_at']} to {state['finished_at']})")
            for route, r in load["routes"].items():
                print(f"  {route}: {r['requests']} requests, p50 {r['p50_ms']:.0f} ms, p99 "
                      f"{r['p99_ms']:.0f} ms")
        finally:
            server.terminate()
            server.wait(timeout=120)
        if any(s >= 500 or s == 0 for s in load["statuses"]) or state["state"] != "succeeded":
            raise SystemExit("FAILED: a 5xx, a failed request or a failed run job")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
