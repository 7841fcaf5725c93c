"""Roots in object storage (README, Tables and files in object storage, issue 17), against a real
S3-compatible server
(SeaweedFS, tests/support/seaweed.py), never a mock.

The representative subset run on S3: the end-to-end sample week with the broken day (tables,
error reports, reports against final_results/), the crash harness at the hooks inside split
(between the copy and the delete too), the commit and the erasure, one arrival order other than
the calendar's, the hostile files of the crash world (a truncated export, a non-array JSON, a bad
value), the lease, and the errors of a wrong root, wrong credentials and an unreachable
endpoint. Each compares what the S3 root holds (downloaded) with the same run on a local root.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from support import drifting, seaweed
from support.commands import finish, minilake, start
from test_crash import (
    ERASURE_HOOKS,
    assert_same,
    erasure_outcome,
    make_erasure_world,
    make_world,
    outcome,
    rerun_status,
)

import minilake as ml

pytestmark = pytest.mark.xdist_group("s3-a")

MOVES = ["storage.copied:3", "split.after_move:7"]
COMMITS = ["ingest.before_commit:3", "ingest.after_commit:6", "quarantine.after_reason:1"]
ERASURES = ["storage.copied:2", "erasure.checkpointed:1"]    # 2: a staged rewrite's copy
# Two groups, so that both of CI's workers share the S3 tests (a SeaweedFS server each).
OTHER = pytest.mark.xdist_group("s3-b")


def run(root: str, s3, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    done = minilake("run", "--root", root, *args, env={**s3.env, **(env or {})})
    assert "Traceback" not in done.stderr, done.stderr
    return done


def comparable(state: dict) -> dict:
    """An outcome without what differs between a local disk and a bucket by nature: a file's
    modification time (an object's is its upload)."""
    state = dict(state)
    state["log"] = state["log"].drop(columns=["mtime_ns"], errors="ignore")
    return state


@pytest.fixture(scope="module")
def crash_world(tmp_path_factory) -> Path:
    """tests/system/test_crash.py's world: 4 days, a bad value, a non-array JSON, a truncated
    CSV."""
    return make_world(tmp_path_factory.mktemp("s3_world"))


@pytest.fixture(scope="module")
def local_outcome(crash_world, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("s3_local") / "root"
    shutil.copytree(crash_world, root)
    ml.run(root)
    return comparable(outcome(root))


def s3_outcome(s3, root: str, into: Path, of=outcome) -> dict:
    return comparable(of(s3.mirror(root, into)))


def test_the_workbook_on_s3_matches_final_results_and_a_local_run(s3, repo_copy, tmp_path):
    """workbook.ipynb on an S3 root: the sample week, its reports against final_results/, the
    broken day and its expected errors; then tables, error reports and marts as a local run's."""
    from minilake import reports
    from minilake.lake.layout import MARTS
    from minilake.outbound.marts import read_mart

    root = s3.new_root("week", repo_copy)
    notebook = Path(__file__).resolve().parents[2] / "workbook.ipynb"
    done = minilake("workbook", "--root", root, "--notebook", str(notebook), env=s3.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": matches") == 6, done.stdout
    assert f"saved {root}/reports/workbook.ipynb" in done.stdout
    ml.run(repo_copy)
    ml.land_sample(repo_copy, "broken_day")
    ml.run(repo_copy)
    got = s3.mirror(root, tmp_path / "mirror")
    for source in ("customer", "product", "sales"):
        pd.testing.assert_frame_equal(ml.read_table(source, root=got),
                                      ml.read_table(source, root=repo_copy), obj=source)
    for mart in MARTS:
        mine, theirs = (read_mart(mart, root=r).to_pandas() for r in (got, repo_copy))
        order = list(theirs.columns)
        pd.testing.assert_frame_equal(mine.sort_values(order).reset_index(drop=True),
                                      theirs.sort_values(order).reset_index(drop=True), obj=mart)
    shown = {p.name: p.read_bytes() for p in (got / "error_reports").iterdir()}
    assert shown == {p.name: p.read_bytes() for p in (repo_copy / "error_reports").iterdir()}
    expected = pd.read_csv(repo_copy / "final_results" / "expected_errors.csv")
    summary = reports.error_summary(got, files=expected["file"].tolist())
    assert summary["bad_rows"].tolist() == expected["bad_rows"].tolist()
    assert not any(k.startswith("landing_zone/") for k in s3.keys(root))


def test_hostile_files_on_s3_give_the_local_outcome(s3, crash_world, local_outcome, tmp_path):
    root = s3.new_root("hostile", crash_world)
    assert run(root, s3).returncode == 1           # two files quarantined
    got = s3_outcome(s3, root, tmp_path / "mirror")
    assert_same(got, local_outcome, "s3")
    reasons = [k for k in s3.keys(root) if k.endswith(".reason.txt")]
    assert reasons == ["quarantine/customer/customer_20241012.csv.reason.txt",
                       "quarantine/product/products_20241012.json.reason.txt"]


@OTHER
def test_the_dask_engine_on_s3_gives_the_local_outcome(s3, crash_world, local_outcome,
                                                      tmp_path):
    """README, A distributed engine with §12: the Dask workers (a LocalCluster of the run) read the
    raw files and
    the current versions from the bucket and write the data files there."""
    root = s3.new_root("dask", crash_world)
    assert run(root, s3, "--engine", "dask", "--ranges", "3").returncode == 1   # 2 quarantined
    got = s3_outcome(s3, root, tmp_path / "mirror")
    assert_same(got, local_outcome, "dask on s3")


@OTHER
def test_a_drifting_day_on_s3_gives_the_local_outcome(s3, tmp_path):
    """docs/contracts.md: the contract read from the bucket's minilake.toml; a column more
    (added to the customer and sales tables, the product's discarded), one fewer (kept
    empty) and one widened (the product's creation date, its table rewritten in the bucket)
    give the tables and schema log of a local run."""
    world = drifting.world(tmp_path / "world")
    local = tmp_path / "local"
    shutil.copytree(world, local)
    assert ml.run(local).ok
    root = s3.new_root("drift", world)
    assert run(root, s3).returncode == 0
    got = s3.mirror(root, tmp_path / "mirror")
    assert_same(comparable(outcome(got)), comparable(outcome(local)), "drift on s3")
    changes = drifting.schema_changes(local)
    pd.testing.assert_frame_equal(drifting.schema_changes(got), changes)
    assert len(changes) == 9


def test_days_arriving_in_another_order_on_s3_give_the_same_tables(s3, crash_world,
                                                                   local_outcome, tmp_path):
    staged = tmp_path / "staged"
    shutil.copytree(crash_world, staged)
    later = staged / "later"
    later.mkdir()
    days = sorted({p.name.rsplit("_", 1)[1].split(".")[0]
                   for p in (staged / "landing_zone").iterdir()})
    for p in (staged / "landing_zone").iterdir():
        if days[1] in p.name:
            shutil.move(p, later / p.name)           # the second day arrives last
    root = s3.new_root("order", staged)
    run(root, s3)
    fs = s3.fs()
    for p in later.iterdir():
        fs.put_file(str(p), f"{root.removeprefix('s3://')}/landing_zone/{p.name}")
    run(root, s3)
    got = s3_outcome(s3, root, tmp_path / "mirror")
    for key in ("customer", "product", "sales"):
        pd.testing.assert_frame_equal(got[key], local_outcome[key], obj=key)
    assert got["error_reports"] == local_outcome["error_reports"]
    # maintenance on the bucket (docs/history.md): compacted, the tables read the same
    before = {v: ml.read_table("product", root=tmp_path / "mirror", version=v)
              for v in ml.versions("product", tmp_path / "mirror")["version"]}
    done = minilake("maintain", "--root", root, env=s3.env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "maintain: product: " in done.stdout and "compacted" in done.stdout, done.stdout
    mirror = s3.mirror(root, tmp_path / "maintained")
    got = s3_outcome(s3, root, tmp_path / "maintained_again")
    for key in ("customer", "product", "sales"):
        pd.testing.assert_frame_equal(got[key], local_outcome[key], obj=f"maintained: {key}")
    assert ml.versions("product", mirror)["operation"].iloc[-1] == "COMPACT"
    for version, frame in before.items():
        pd.testing.assert_frame_equal(ml.read_table("product", root=mirror, version=version),
                                      frame, obj=f"product version {version}")


@pytest.mark.parametrize("hook", MOVES + COMMITS)
def test_a_run_killed_inside_split_or_a_commit_on_s3_then_rerun_equals_an_uninterrupted_run(
        hook, s3, crash_world, local_outcome, tmp_path):
    root = s3.new_root("crash", crash_world)
    killed = run(root, s3, env={"MINILAKE_CRASH_AT": hook}).returncode
    assert killed == -signal.SIGKILL, f"{hook}: the hook was not reached"
    if hook.startswith("storage.copied"):       # killed between an object's copy and delete
        keys = s3.keys(root)
        assert any(k.startswith("landing_zone/") for k in keys)
    # The killed run's lease is taken over (2 would be a refusal); the rerun's status is the
    # one the killed run's ingest log calls for (test_crash.rerun_status)
    want = rerun_status(s3.mirror(root, tmp_path / "killed"))
    rerun = run(root, s3)
    assert rerun.returncode == want, f"{hook}: {rerun.stderr}"
    assert_same(s3_outcome(s3, root, tmp_path / "mirror"), local_outcome, hook)


@pytest.fixture(scope="module")
def erasure_world(crash_world, tmp_path_factory) -> Path:
    return make_erasure_world(crash_world, tmp_path_factory.mktemp("s3_erasure") / "root")


@OTHER
def test_an_erasure_killed_on_s3_then_rerun_equals_an_uninterrupted_local_one(
        s3, erasure_world, tmp_path):
    assert set(ERASURES) - {"storage.copied:2"} <= set(ERASURE_HOOKS)
    want_root = tmp_path / "local"
    shutil.copytree(erasure_world, want_root)
    ml.run(want_root)
    want = comparable(erasure_outcome(want_root))
    assert len(want["erasures"]) == 2
    for hook in ERASURES:
        root = s3.new_root("erasure", erasure_world)
        killed = run(root, s3, env={"MINILAKE_CRASH_AT": hook}).returncode
        assert killed == -signal.SIGKILL, f"{hook}: the hook was not reached"
        assert run(root, s3).returncode == 0, hook
        got = s3_outcome(s3, root, tmp_path / hook.replace(":", "_"), of=erasure_outcome)
        assert_same(got, want, hook)
        pd.testing.assert_frame_equal(got["erasures"], want["erasures"], obj=hook)
        assert got["left"] == [], hook


def released(s3, root: str) -> bool:
    """The lease object says its last holder released it (it stays: it keeps the epoch, SPEC
    §14)."""
    lease = json.loads(s3.fs().cat_file(f"{root.removeprefix('s3://')}/.minilake.lock"))
    return bool(lease.get("released")) and lease["epoch"] > 0


def _holder(s3, root: str, seconds: float, env: dict | None = None) -> subprocess.Popen:
    """A process that takes the root's lock (lease) and keeps it until killed."""
    code = ("import sys, time\nfrom minilake.lake.layout import Layout\n"
            "from minilake.lake.lock import hold\n"
            f"with hold(Layout.of({root!r}).root, 'holder'):\n"
            "    print('held', flush=True)\n    time.sleep(600)")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **s3.env,
                                    "MINILAKE_LEASE_SECONDS": str(seconds), **(env or {})})
    assert process.stdout.readline().strip() == "held", process.stderr.read()
    return process


def renewed(s3, root: str) -> dict:
    """Wait until the lease's holder has renewed it: the object, read again until then, runs
    to a later moment than it first said. Returns the lease then."""
    first = s3.lease(root)["expires"]
    deadline = time.monotonic() + seaweed.READY_WITHIN
    while True:
        lease = s3.lease(root)
        if dt.datetime.fromisoformat(lease["expires"]) > dt.datetime.fromisoformat(first):
            return lease
        assert time.monotonic() < deadline, f"the lease written {first} was not renewed: {lease}"
        time.sleep(0.2)


@OTHER
def test_a_second_writer_on_s3_exits_at_once_naming_the_holder(s3, crash_world):
    """Refused while the holder renews its lease: exit 2, one line, nothing moved. It did not
    wait for the lease: the holder keeps it until it is killed, after the refusal."""
    root = s3.new_root("two", crash_world)
    holder = _holder(s3, root, 9)                     # renewed every 3 s
    try:
        renewed(s3, root)
        done = run(root, s3)
        assert done.returncode == 2
        assert holder.poll() is None, "the holder ended before the refusal"
        assert f"pid {holder.pid}" in done.stderr and "holder" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert not any(k.startswith("archive/") for k in s3.keys(root))
    finally:
        holder.kill()
        holder.wait()


@OTHER
def test_a_lease_left_by_a_run_killed_here_is_taken_over_at_once(s3, crash_world):
    root = s3.new_root("lease", crash_world)
    holder = _holder(s3, root, 600)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    done = run(root, s3)
    assert done.returncode == 1                       # the world's two quarantined files
    assert "taking over the lease" in done.stderr and f"pid {holder.pid}" in done.stderr
    assert released(s3, root)                         # at the end of the run


def another_machines_lease(s3, root: str, seconds: float) -> None:
    """Write the root's lease as a run on another machine would, running ``seconds`` more."""
    now = dt.datetime.now(dt.UTC)
    left = {"pid": 4242, "host": "another-machine", "command": "run",
            "since": now.isoformat(timespec="seconds"),
            "expires": (now + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")}
    s3.fs().pipe_file(f"{root.removeprefix('s3://')}/.minilake.lock", json.dumps(left).encode())


@OTHER
def test_a_lease_left_by_a_run_on_another_machine_is_taken_over_after_it_expires(
        s3, crash_world):
    """Refused while the other machine's lease runs (an hour ahead: however slow this machine
    is); then that run's last renewal, which runs out in two seconds: once the lease object
    says it has expired, the next run takes it over."""
    root = s3.new_root("expiry", crash_world)
    another_machines_lease(s3, root, 3600)
    busy = run(root, s3)
    assert busy.returncode == 2 and "pid 4242 on another-machine" in busy.stderr
    assert not any(k.startswith("archive/") for k in s3.keys(root))
    another_machines_lease(s3, root, 2)                 # renewed one last time, then lost
    s3.until_lease_expired(root)
    done = run(root, s3)
    assert done.returncode == 1
    assert "taking over the lease" in done.stderr and "another-machine" in done.stderr
    assert released(s3, root)


RACER = """
import sys
from minilake.lake.layout import Layout
from minilake.lake.lock import RootBusy, hold
print("ready", flush=True)
sys.stdin.readline()                                   # go
try:
    with hold(Layout.of(sys.argv[1]).root, "racer"):
        print("won", flush=True)
        sys.stdin.read()                               # holds the root until told
except RootBusy:
    print("busy", flush=True)
"""


@OTHER
def test_two_runs_taking_over_one_expired_lease_only_one_wins(s3, crash_world):
    """Three processes, their imports done, try the expired lease at one signal; the winner
    holds the root until every racer has said what it got."""
    root = s3.new_root("race", crash_world)
    holder = _holder(s3, root, 2)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    s3.until_lease_expired(root)
    racers = [subprocess.Popen([sys.executable, "-c", RACER, root], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env={**os.environ, **s3.env})
              for _ in range(3)]
    assert [r.stdout.readline().strip() for r in racers] == ["ready"] * 3
    for racer in racers:
        racer.stdin.write("go\n")
        racer.stdin.flush()
    said = sorted(r.stdout.readline().strip() for r in racers)
    for racer in racers:
        racer.stdin.close()
        racer.wait()
    assert said == ["busy", "busy", "won"]


@OTHER
def test_wrong_credentials_or_no_endpoint_is_one_line_naming_bucket_and_endpoint(
        s3, crash_world):
    root = s3.new_root("creds", crash_world)
    before = s3.keys(root)
    bucket = s3.bucket
    wrong = finish(start("run", "--root", root, env={**s3.env,
                                                      "AWS_SECRET_ACCESS_KEY": "not-it"}))
    assert wrong.returncode == 2
    assert wrong.stderr.count("\n") == 1 and "Traceback" not in wrong.stderr
    assert f"'{bucket}'" in wrong.stderr and s3.endpoint in wrong.stderr
    assert "credentials" in wrong.stderr and "not-it" not in wrong.stderr
    with seaweed.refusing_port() as port:
        gone = f"http://127.0.0.1:{port}"             # nothing listens there
        unreachable = finish(start("run", "--root", root, env={**s3.env,
                                                                "AWS_ENDPOINT_URL": gone}))
    assert unreachable.returncode == 2
    assert unreachable.stderr.count("\n") == 1 and gone in unreachable.stderr
    assert f"'{bucket}'" in unreachable.stderr
    missing = finish(start("run", "--root", f"s3://{bucket}/no-such-root", env=s3.env))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert s3.keys(root) == before                    # nothing moved
    assert not s3.keys(f"s3://{bucket}/no-such-root")  # nothing created


@OTHER
def test_sql_export_status_and_reset_read_and_write_the_bucket(s3, s3_env, repo_copy, tmp_path):
    root = s3.new_root("tools", repo_copy)
    assert run(root, s3).returncode == 0
    counted = ml.sql("SELECT count(*) AS n FROM customer_current", root=root)
    local = tmp_path / "local"
    shutil.copytree(repo_copy, local)
    ml.run(local)
    table = ml.read_table("customer", root=local)
    assert int(counted["n"].iloc[0]) == int(table["is_current"].sum())
    exported = ml.export("customer", root=root)
    assert str(exported.path) == f"{root}/exports/customer.avro"
    assert exported.rows == len(table)
    history = ml.versions("customer", root=root)
    assert history["files"].tolist() == ml.versions("customer", root=local)["files"].tolist()
    as_of = ml.read_table("customer", as_of="2024-10-12", root=root)
    pd.testing.assert_frame_equal(as_of, ml.read_table("customer", as_of="2024-10-12",
                                                       root=local))
    done = ml.reset(root)
    assert "tables" in done.deleted and "exports" in done.deleted
    keys = s3.keys(root)
    assert not any(k.startswith(("tables/", "archive/", "exports/")) for k in keys)
    assert sorted(k for k in keys if k.startswith("landing_zone/")) == sorted(
        f"landing_zone/{p.name}" for p in (repo_copy / "landing_zone").iterdir())


@OTHER
def test_a_pull_lands_its_file_in_the_bucket(s3, s3_env, repo_copy, httpserver, monkeypatch):
    monkeypatch.setenv("MINILAKE_API_TOKEN", "s3cret")
    root = s3.new_root("pull", repo_copy)
    records = [{"sale_id": "1", "customer_id": "1", "product_id": "P1", "quantity": "1",
                "price_per_unit": "1.00", "total_price": "1.00", "sale_date": "2024-10-20"}]
    httpserver.expect_request("/sales", query_string={"date": "2024-10-20", "page": "1"}
                              ).respond_with_json(records)
    httpserver.expect_request("/sales", query_string={"date": "2024-10-20", "page": "2"}
                              ).respond_with_json([])
    result = ml.pull("sales", "2024-10-20", root, httpserver.url_for("/"))
    assert result.outcome == "landed", result.line()
    body = s3.fs().cat_file(f"{root.removeprefix('s3://')}/landing_zone/sales_20241020.json")
    assert json.loads(body) == records
