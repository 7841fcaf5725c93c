"""A writer paused past its lease cannot change the outcome (docs/history.md, issue 32).

A run frozen with SIGSTOP (what a long GC pause, a suspended VM or a network partition does to
a process) at a named point of the flow (``MINILAKE_PAUSE_AT``, the crash points), its S3 lease
left to expire, another run taking the root over and finishing, then the first one resumed:
the first must stop with one line before its next write, and the root must hold what one
uninterrupted run on a local root gives, marts included. Beside it, the table's own refusal of
a commit whose ``txn`` it already holds, with the lease intact (locally and on S3), and two runs
started at the same moment on an expired lease.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from support.commands import HUNG_AFTER, finish, start
from test_crash import assert_same, make_world, outcome
from test_s3 import comparable

import minilake as ml
from minilake.lake import delta, storage
from minilake.lake.layout import MARTS, Layout
from minilake.lake.lock import VERSIONS_PER_EPOCH, LeaseLost, hold
from minilake.outbound.marts import read_mart

S3_A, S3_B = pytest.mark.xdist_group("s3-a"), pytest.mark.xdist_group("s3-b")
LEASE = "3"                       # seconds: the paused run's lease, renewed every second
ONE_SOURCE_AT_A_TIME = {"MINILAKE_SIDE_BY_SIDE_MB": "0"}


def with_marts(root: Path) -> dict:
    """What a run leaves behind (test_crash.outcome), the marts too."""
    state = comparable(outcome(root))
    for mart in MARTS:
        frame = read_mart(mart, root=root).to_pandas()
        state[mart] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return state


def assert_same_with_marts(got: dict, want: dict, case: str) -> None:
    assert_same(got, want, case)
    for mart in MARTS:
        pd.testing.assert_frame_equal(got[mart], want[mart], obj=f"{case}: {mart}")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory.mktemp("fence_world"))


@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fence_local") / "root"
    shutil.copytree(world, root)
    ml.run(root)
    return with_marts(root)


def stopped(process: subprocess.Popen, hung_after: float = HUNG_AFTER) -> bool:
    """Wait until ``process`` is stopped by a signal (True) or has ended (False); one that
    does neither within ``hung_after`` seconds (a hang guard) fails the test."""
    end = time.monotonic() + hung_after
    while time.monotonic() < end:
        if process.poll() is not None:
            return False
        if state(process) == "T":
            return True
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"waiting for the run to pause at its point: it neither paused nor ended "
                f"within {hung_after} s; {finish(process).stderr[-2000:]}")


def state(process) -> str:
    """The process's state letter from /proc (T: stopped by a signal)."""
    return Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def resume(process) -> subprocess.CompletedProcess:
    """SIGCONT to a run that must still be paused (nothing else may have woken it while
    another run took its root: a test that let it run early would test nothing), and its
    end."""
    woke = state(process)
    assert woke == "T", f"the paused run was awake (state {woke}) before the test resumed it"
    process.send_signal(signal.SIGCONT)
    return finish(process)


def lost_lease_line(done: subprocess.CompletedProcess) -> str:
    """The paused run's last words: exit 2 and one line (after what it said before it was
    paused: a quarantine, say), no traceback."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert sum("lost the lease" in line for line in lines) == 1, done.stderr
    assert lines[-1].startswith("minilake run: lost the lease of "), done.stderr
    assert lines[-1].endswith("; nothing of it applied"), lines[-1]
    return lines[-1]


# Why the paused run stops. While the sources go side by side, another source's thread may
# have passed the fence just before the pause froze it: then the table's txn refuses its
# commit first (the fence's own "took it over" comes second), as in the blind append below.
TAKEN = "took it over"
TAKEN_OR_REFUSED = "took it over|another run committed to tables/"
PAUSES = [
    pytest.param("split.after_move:3", {}, TAKEN, marks=S3_A, id="during split"),
    pytest.param("ingest.after_diff:5", {}, TAKEN_OR_REFUSED, marks=S3_B,
                 id="in the middle of the files"),
    pytest.param("ingest.files_written:4", {}, TAKEN_OR_REFUSED, marks=S3_A,
                 id="between data files and their commit"),
    pytest.param("commit.fenced:4", ONE_SOURCE_AT_A_TIME, "another run committed to tables/",
                 marks=S3_B, id="after the fence, before the commit"),
    pytest.param("ingest.after_commit:3", {}, TAKEN_OR_REFUSED, marks=S3_A,
                 id="between a commit and its log row"),
    pytest.param("marts.kept:1", {}, "", marks=S3_B, id="inside the marts"),
]


def without_corrections(world: Path, root: Path) -> Path:
    """The world with every sales row whose sale_id an earlier file holds left out: each
    sales file after the first is then a blind append (new files only, nothing removed),
    which delta-rs's conflict check on files alone lets through on a stale snapshot."""
    shutil.copytree(world, root)
    seen: set[bytes] = set()
    for path in sorted((root / "landing_zone").glob("sales_*.txt")):
        rows = [r for r in path.read_bytes().split(b"\r\n") if r]
        kept = [r for r in rows if r.split(b"~", 1)[0] not in seen]
        seen |= {r.split(b"~", 1)[0] for r in rows}
        path.write_bytes(b"\r\n".join(kept) + b"\r\n")
    return root


@S3_A
def test_a_blind_append_paused_after_the_fence_is_refused_by_the_tables_txn(
        s3, world, tmp_path):
    """One source at a time: commits 1-3 are customer's, 4-6 product's, 7 makes the sales
    table, 8 is the second sales file: new sales only. Paused just before that commit, the
    run wakes to find the sales table moved on by the run that took over; only the txn can
    tell (the files it read were not touched)."""
    blind = without_corrections(world, tmp_path / "blind")
    reference = tmp_path / "reference"
    shutil.copytree(blind, reference)
    ml.run(reference)
    want = with_marts(reference)
    root = s3.new_root("blind", blind)
    paused = start("run", "--root", root, env={**s3.env, **ONE_SOURCE_AT_A_TIME,
                                                "MINILAKE_PAUSE_AT": "commit.fenced:8",
                                                "MINILAKE_LEASE_SECONDS": LEASE})
    assert stopped(paused), finish(paused).stderr
    s3.until_lease_expired(root)
    other = finish(start("run", "--root", root, env=s3.env))
    print(f"the run that took over said:\n{other.stdout}{other.stderr}")  # shown if it fails
    assert other.returncode in (0, 1), other.stderr
    line = lost_lease_line(resume(paused))
    assert "another run committed to tables/sales since this run read it" in line, line
    assert "stopped before committing sales/sales_20241010.txt" in line, line
    assert_same_with_marts(with_marts(s3.mirror(root, tmp_path / "mirror")), want, "blind")


@pytest.mark.parametrize(("point", "env", "why"), PAUSES)
def test_a_run_paused_past_its_lease_stops_and_the_lake_is_an_uninterrupted_runs(
        point, env, why, s3, world, uninterrupted, tmp_path):
    root = s3.new_root("paused", world)
    paused = start("run", "--root", root, env={**s3.env, **env, "MINILAKE_PAUSE_AT": point,
                                                "MINILAKE_LEASE_SECONDS": LEASE})
    assert stopped(paused), f"{point}: not reached ({finish(paused).stderr})"
    s3.until_lease_expired(root)                              # as its lease object says
    taker = start("run", "--root", root, env=s3.env)
    other = finish(taker)
    print(f"the run that took over said:\n{other.stdout}{other.stderr}")  # shown if it fails
    # 1 while it quarantines one of the world's two bad files; 0 if the paused run had
    assert other.returncode in (0, 1), other.stderr
    assert "taking over the lease of a run that did not finish" in other.stderr
    assert f"pid {paused.pid}" in other.stderr
    line = lost_lease_line(resume(paused))
    assert f"to pid {taker.pid} on " in line and re.search(why, line), line
    got = with_marts(s3.mirror(root, tmp_path / "mirror"))
    assert_same_with_marts(got, uninterrupted, point)
    again = finish(start("run", "--root", root, env=s3.env))  # a third run finds nothing to do
    assert again.returncode == 0 and "ingest: nothing new in archive/" in again.stdout
    assert_same_with_marts(with_marts(s3.mirror(root, tmp_path / "again")), uninterrupted,
                           f"{point}, a third run")


def test_a_paused_local_run_keeps_its_root_and_finishes_when_resumed(world, uninterrupted,
                                                                     tmp_path):
    """A local lock (flock) does not expire while its holder is frozen: a second run is
    refused, the first one ends as if it had never stopped."""
    root = tmp_path / "root"
    shutil.copytree(world, root)
    paused = start("run", "--root", str(root), env={"MINILAKE_PAUSE_AT": "ingest.after_diff:5"})
    assert stopped(paused)
    other = finish(start("run", "--root", str(root)))
    assert other.returncode == 2 and f"pid {paused.pid}" in other.stderr
    assert resume(paused).returncode == 1              # the world's two quarantines
    assert_same_with_marts(with_marts(root), uninterrupted, "paused locally")


@S3_A
def test_two_runs_started_together_on_an_expired_lease_apply_each_delivery_once(
        s3, world, uninterrupted, tmp_path):
    root = s3.new_root("together", world)
    code = ("import time\nfrom minilake.lake.layout import Layout\n"
            "from minilake.lake.lock import hold\n"
            f"with hold(Layout.of({root!r}).root, 'holder'):\n    print('held', flush=True)\n"
            "    time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **s3.env, "MINILAKE_LEASE_SECONDS": "2"})
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGSTOP)            # alive, its lease left to expire
    s3.until_lease_expired(root)
    runs = [start("run", "--root", root, env=s3.env) for _ in range(2)]
    done = [finish(r) for r in runs]
    holder.kill()
    holder.wait()
    codes = sorted(d.returncode for d in done)
    assert codes == [1, 2], [d.stderr for d in done]          # one applied, one was refused
    busy = next(d for d in done if d.returncode == 2)
    assert "is in use by minilake" in busy.stderr and len(busy.stderr.splitlines()) == 1
    assert_same_with_marts(with_marts(s3.mirror(root, tmp_path / "mirror")), uninterrupted,
                           "two runs at once")


def _txn_cases(root) -> None:
    """A table's own refusal of commits whose txn it holds, the lease intact: after another
    writer's commit since the snapshot (delta-rs's conflict check), and on a snapshot that
    holds a txn version at or above the commit's (minilake's check on that snapshot)."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake
    from deltalake.transaction import Transaction

    rows = pa.table({"n": pa.array([1], pa.int64())})
    layout = Layout.of(root)
    path = layout.table("fenced")
    with hold(layout.root, "test") as claim:
        delta.write(path, rows, mode="append")
        app = delta.app_id(path)
        first = delta.delta(path).transaction_version(app)
        assert first == claim.epoch * VERSIONS_PER_EPOCH + 1

        def other_writer(version: int) -> None:
            """A commit carrying minilake's application id, made around the fence by a
            writer of its own (not through this run's handle on the table)."""
            write_deltalake(DeltaTable(storage.uri(path),
                                       storage_options=storage.delta_options(path)), rows,
                            mode="append",
                            storage_options=storage.delta_options(path),
                            commit_properties=CommitProperties(
                                app_transactions=[Transaction(app, version)]))

        snapshot = delta.delta(path)                    # read, then another commit lands
        other_writer(first + 10)
        with pytest.raises(LeaseLost, match="another run committed to tables/fenced"):
            delta.write(path, rows, mode="append", table=snapshot)
        # the table holds the very version this run's next commit would carry
        held = claim.epoch * VERSIONS_PER_EPOCH + 3
        other_writer(held)
        with pytest.raises(LeaseLost, match=f"holds the commits .* \\(txn {held}\\)"):
            delta.write(path, rows, mode="append")
        claim.fence("checking")                          # the lease itself was never lost
    assert delta.dataset(path).count_rows() == 3       # ours, and the other writer's two


@pytest.fixture(params=["local", pytest.param("s3", marks=S3_B)])
def a_root(request, world, tmp_path):
    """A root locally, and one on S3 (the bucket's settings in this process's environment)."""
    if request.param == "local":
        (tmp_path / "landing_zone").mkdir()
        return tmp_path
    request.getfixturevalue("s3_env")
    return request.getfixturevalue("s3").new_root("fenced", world)


def test_a_commit_with_a_txn_the_table_holds_is_refused(a_root):
    _txn_cases(a_root)


RACES = 12


def _racing_creates(root) -> None:
    """Two writers that both believe they hold the root (a run paused past its lease and
    resumed while the run that took over makes the same table) create one table at the same
    moment, a dozen tables over: for each, one commit is the table's and the other is refused.
    delta-rs on its own retries the loser's create as version 1, a second "create" with its
    rows; without the fence most of these races end with two."""
    import threading

    layout = Layout.of(root)
    outcomes: dict[str, list] = {}
    with hold(layout.root, "test"):
        for race in range(RACES):
            path = layout.table(f"made{race}")
            gate = threading.Barrier(2)
            results = outcomes[path.name] = []

            def make(writer: int, path=path, gate=gate, results=results) -> None:
                gate.wait()
                try:
                    delta.write(path, pa.table({"writer": pa.array([writer], pa.int64())}))
                    results.append(writer)
                except LeaseLost as refused:
                    results.append(str(refused))

            threads = [threading.Thread(target=make, args=(w,)) for w in (1, 2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    for name, results in outcomes.items():
        won = [r for r in results if isinstance(r, int)]
        lost = [r for r in results if isinstance(r, str)]
        assert len(won) == 1 and len(lost) == 1, f"{name}: {results}"
        assert f"another run committed to tables/{name} since this run read it" in lost[0]
        table = delta.delta(layout.table(name))
        assert table.version() == 0, f"{name}: {table.history()}"
        assert table.to_pyarrow_table()["writer"].to_pylist() == won, name


def test_two_creates_of_one_table_at_once_make_it_once(a_root):
    _racing_creates(a_root)


def test_each_run_takes_a_higher_epoch_kept_in_the_released_lock(tmp_path):
    (tmp_path / "landing_zone").mkdir()
    layout = Layout.of(tmp_path)
    with hold(layout.root, "first") as first:
        pass
    import json

    kept = json.loads((tmp_path / ".minilake.lock").read_text())
    assert kept["released"] and kept["epoch"] == first.epoch
    (tmp_path / ".minilake.lock").write_text(json.dumps({**kept, "epoch": 2 ** 50}))
    with hold(layout.root, "second") as second:       # a lock from a clock far ahead
        assert second.epoch == 2 ** 50 + 1
