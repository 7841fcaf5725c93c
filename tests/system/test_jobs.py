"""Jobs in the background and tokens with scopes (issue 42, docs/server.md), on a real
uvicorn process on 127.0.0.1: a job answers 202 at once and its record moves to a state and
a result; cancelled, the tables are those of the files it applied (a file boundary); the
server killed mid-job and started again shows the job failed, and a new run finishes the
work. The judge is the raw files (tests/support/arrivals.py), not the server's word."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.arrivals import assert_matches_raw, table_contents
from support.commands import HUNG_AFTER
from test_server import TOKEN, Server

import minilake
from minilake.lake.layout import Layout
from minilake.lake.logs import read_log

FINISHED = {"succeeded", "failed", "cancelled"}
JOB_ROUTES = [("POST", "/jobs/run", {}), ("POST", "/jobs/pull", {"source": "sales",
                                                                 "date": "2024-10-09"}),
              ("POST", "/jobs/export", {"table": "sales"}), ("GET", "/jobs", None),
              ("GET", f"/jobs/{'0' * 32}", None), ("GET", f"/jobs/{'0' * 32}/log", None),
              ("DELETE", f"/jobs/{'0' * 32}", None)]
READ_ROUTES = ["/status", "/tables/customer", "/reports/"]


def finished(server: Server, job_id: str) -> dict:
    """The job's record once it has finished (a hang guard, not a time limit)."""
    deadline = time.monotonic() + HUNG_AFTER
    while time.monotonic() < deadline:
        record = server.client.get(f"/jobs/{job_id}").json()
        if record["state"] in FINISHED:
            return record
        time.sleep(0.05)
    pytest.fail(f"job {job_id} did not finish within {HUNG_AFTER} s: {record}")


def committed_twice(root: Path) -> None:
    """Wait until every source's table has its third commit: a run under way, some files of
    each source applied, most still to come."""
    deadline = time.monotonic() + HUNG_AFTER
    logs = [root / "tables" / s / "_delta_log" / f"{2:020d}.json"
            for s in ("customer", "product", "sales")]
    while not all(p.exists() for p in logs):
        assert time.monotonic() < deadline, "the run job committed nothing"
        time.sleep(0.01)


@pytest.fixture
def month(tmp_path) -> Path:
    """A root with 16 days of a small world landed (48 files: a run of a few seconds)."""
    root = tmp_path / "root"
    minilake.generate(root, start="2024-10-09", days=16, customers=300, seed=11,
                      landing_only=True)
    return root


def applied_only(root: Path, into: Path) -> Path:
    """A folder of the raw files the root's ingest log names applied, by source."""
    log = read_log(Layout.of(root))
    for row in log[log["status"] == "applied"].itertuples():
        (into / row.source).mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "archive" / row.source / row.file, into / row.source / row.file)
    return into


def test_a_run_job_answers_202_at_once_and_ends_with_minilake_runs_result(committed, tmp_path):
    root, alone = tmp_path / "root", tmp_path / "alone"
    for where in (root, alone):
        shutil.copytree(committed / "landing_zone", where / "landing_zone")
    server = Server(root)
    try:
        answer = server.client.post("/jobs/run")
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert answer.headers["location"] == f"/jobs/{job['id']}"
        assert job["state"] in ("queued", "running") and job["finished_at"] is None
        record = finished(server, job["id"])
        assert record["state"] == "succeeded" and record["error"] is None
        want = minilake.run(alone, progress=False)
        lines = record["result"]["lines"]
        assert record["result"]["ok"] and want.ok
        assert [line.split(" (")[0] for line in lines] == [
            line.split(" (")[0] for line in want.lines()]
        assert record["result"]["quarantined"] == []
        assert_matches_raw(table_contents(root), root / "archive", "run job", archived=True)
        said = server.client.get(f"/jobs/{job['id']}/log").json()
        assert said["state"] == "succeeded" and set(lines) <= set(said["lines"])
        listed = server.client.get("/jobs").json()["jobs"]
        assert [j["id"] for j in listed] == [job["id"]]
        on_disk = json.loads((root / "jobs" / f"{job['id']}.json").read_text())
        assert on_disk == record
        assert server.client.delete(f"/jobs/{job['id']}").status_code == 409
    finally:
        server.stop()


def test_a_job_cancelled_while_running_leaves_the_tables_of_a_file_boundary(month, tmp_path):
    server = Server(month)
    try:
        first = server.client.post("/jobs/run").json()
        second = server.client.post("/jobs/run").json()       # waits its turn
        assert server.client.get(f"/jobs/{second['id']}").json()["state"] == "queued"
        dropped = server.client.delete(f"/jobs/{second['id']}")
        assert dropped.status_code == 202 and dropped.json()["state"] == "cancelled"
        committed_twice(month)
        cancel = server.client.delete(f"/jobs/{first['id']}")
        assert cancel.status_code == 202 and cancel.json()["cancel_requested"]
        record = finished(server, first["id"])
        assert record["state"] == "cancelled", record
        assert record["error"].startswith(f"interrupted (cancelled by DELETE /jobs/"
                                          f"{first['id']}): stopped before")
        log = read_log(Layout.of(month))
        applied = log[log["status"] == "applied"]
        assert 3 * 3 <= len(applied) < 48                   # stopped part of the way
        assert_matches_raw(table_contents(month), applied_only(month, tmp_path / "applied"),
                           "cancelled", archived=True)
        skipped = server.client.get(f"/jobs/{second['id']}").json()
        assert skipped["state"] == "cancelled" and skipped["started_at"] is None
        assert skipped["status"] == 409           # what ?wait=true answers for it
        again = server.client.post("/jobs/run", params={"wait": "true"})
        assert again.status_code == 200 and again.json()["ok"], again.text
        assert_matches_raw(table_contents(month), month / "archive", "finished", archived=True)
    finally:
        server.stop()


def test_a_server_killed_mid_job_shows_it_failed_after_a_restart(month):
    server = Server(month)
    job = server.client.post("/jobs/run").json()
    committed_twice(month)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=HUNG_AFTER)
    server.client.close()
    server = Server(month)
    try:
        record = server.client.get(f"/jobs/{job['id']}").json()
        assert record["state"] == "failed" and record["finished_at"], record
        assert record["error"].startswith("the job server stopped while the job was running")
        again = server.client.post("/jobs/run", params={"wait": "true"})
        assert again.status_code == 200 and again.json()["ok"], again.text
        assert_matches_raw(table_contents(month), month / "archive", "after the kill",
                           archived=True)
        assert [j["state"] for j in server.client.get("/jobs").json()["jobs"]] == [
            "succeeded", "failed"]
    finally:
        server.stop()


def test_tokens_have_scopes_and_no_token_is_written_anywhere(committed, tmp_path):
    """A read token gets 403 on every job route and reads; a jobs token from the tokens file
    gets 403 on reads and runs jobs; a line of that file it cannot read stops the start,
    naming the line, not the token."""
    root = tmp_path / "root"
    shutil.copytree(committed / "landing_zone", root / "landing_zone")
    read_token, jobs_token = "read-" + "r" * 20, "jobs-#" + "j" * 20     # '#' is no comment
    listed = tmp_path / "tokens"
    listed.write_text(f"# scopes token\njobs {jobs_token}\n")
    server = Server(root, env={"MINILAKE_SERVER_READ_TOKEN": read_token,
                               "MINILAKE_SERVER_TOKENS_FILE": str(listed)})
    try:
        for token, allowed, refused in ((read_token, READ_ROUTES, JOB_ROUTES),
                                        (jobs_token, [], [("GET", p, None)
                                                          for p in READ_ROUTES])):
            bearer = {"Authorization": f"Bearer {token}"}
            for method, path, body in refused:
                answer = httpx.request(method, server.url + path, json=body, headers=bearer,
                                       timeout=HUNG_AFTER)
                assert answer.status_code == 403, (token[:4], method, path, answer.text)
                assert "scope" in answer.json()["detail"]
            for path in allowed:
                assert httpx.get(server.url + path, headers=bearer,
                                 timeout=HUNG_AFTER).status_code in (200, 404), path
        ran = httpx.post(f"{server.url}/jobs/run", params={"wait": "true"}, timeout=HUNG_AFTER,
                         headers={"Authorization": f"Bearer {jobs_token}"})
        assert ran.status_code == 200 and ran.json()["ok"]
        assert httpx.get(f"{server.url}/status", timeout=HUNG_AFTER, headers={
            "Authorization": f"Bearer {read_token}"}).status_code == 200
    finally:
        server.stop()
    said = server.process.stdout.read() + server.process.stderr.read()
    written = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    for token in (TOKEN, read_token, jobs_token):
        assert token not in said and token.encode() not in written
    listed.write_text(f"jobs,admin {jobs_token}\n")
    refused = subprocess.run(
        [sys.executable, "-m", "minilake", "serve", "--root", str(root), "--port", "0"],
        env={**os.environ, "MINILAKE_SERVER_TOKENS_FILE": str(listed)}, capture_output=True,
        text=True, timeout=HUNG_AFTER)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"minilake serve: {listed}, line 1: not '<scopes> <token>'")
    assert jobs_token not in refused.stderr
