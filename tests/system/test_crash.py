"""Crash safety (issue 5): SIGKILL at 50+ points of a run, then a run to completion, must give
exactly what one uninterrupted run gives.

Points are named hooks in the code (``minilake.crashpoints``, set by ``MINILAKE_CRASH_AT``) hit
for the n-th time, plus kills at random moments that land inside library calls (Delta commits,
Parquet writes). ``MINILAKE_CRASH_DEEP=1`` tries every occurrence of every hook instead of a
spread of them (a few hundred runs).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable
from support import drifting, forked, landing
from support import rawfiles as raw
from support.commands import finish, here, start

import minilake
from minilake.generate import generate
from minilake.lake.layout import Layout
from minilake.lake.logs import read_log
from minilake.pipeline import RunResult

DEEP = os.environ.get("MINILAKE_CRASH_DEEP") == "1"
# The fixtures below are session-scoped: each made once per worker, not again each time
# xdist's order leaves this module and comes back to it (tests copy, never change, them).
VOLATILE_LOG = ["started_at", "finished_at", "read_s", "validate_s", "diff_s", "commit_s",
                "table_version"]
# hook -> how many times one run passes it in the world below
HOOKS = {"split.before_move": 12, "split.after_move": 12, "ingest.after_read": 11,
         "ingest.after_diff": 11, "ingest.report_written": 10, "ingest.before_commit": 10,
         "ingest.files_written": 10, "ingest.after_commit": 10, "ingest.logged": 1,
         "quarantine.after_log": 2, "quarantine.after_reason": 2, "rejects.before_commit": 1,
         "rejects.committed": 1}
SPREAD = {12: [1, 4, 8, 12], 11: [1, 3, 5, 7, 9, 11], 10: [1, 2, 3, 4, 6, 8, 10], 2: [1, 2],
          1: [1]}
TIMED_KILLS = 4


def file_contents(root: Path) -> list[str]:
    """sha256 of every delivered file, wherever it is now (reason files are ours, not theirs)."""
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest()
                  for folder in ("landing_zone", "archive", "quarantine")
                  for p in (root / folder).rglob("*")
                  if p.is_file() and not p.name.endswith(".reason.txt"))


def outcome(root: Path) -> dict:
    """Everything a run leaves behind that must not depend on crashes."""
    out = {}
    for source in ("customer", "product", "sales"):
        frame = minilake.read_table(source, root=root)
        out[source] = frame.sort_values(list(frame.columns[:2]) + ["effective_from"]) \
            .reset_index(drop=True)
    log = read_log(Layout.of(root)).drop(columns=VOLATILE_LOG)
    out["log"] = log.sort_values(["source", "file"]).reset_index(drop=True)
    # the rejected rows as a table (docs/quality.md): the error reports', after any crash
    out["rejects"] = minilake.sql(
        "SELECT * EXCLUDE (logged_at, run) FROM rejects ORDER BY report, report_row", root=root) \
        if (root / "tables" / "_rejects").is_dir() else pd.DataFrame()
    for folder in ("error_reports", "quarantine"):
        out[folder] = {str(p.relative_to(root)): p.read_bytes()
                       for p in sorted((root / folder).rglob("*")) if p.is_file()}
    out["files"] = file_contents(root)
    return out


def assert_same(got: dict, want: dict, case: str) -> None:
    for key in ("customer", "product", "sales", "log", "rejects"):
        pd.testing.assert_frame_equal(got[key], want[key], obj=f"{case}: {key}")
    for key in ("error_reports", "quarantine", "files"):
        assert got[key] == want[key], f"{case}: {key}"


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory.mktemp("crash_world"))


def make_world(root: Path) -> Path:
    """4 days of 3 sources with bad rows, an unreadable file and a truncated snapshot."""
    generate(root, start="2024-10-09", days=4, customers=300, seed=11, landing_only=True)
    landing = root / "landing_zone"
    sales = landing / "sales_20241011.txt"
    lines = sales.read_bytes().split(b"\r\n")
    lines[5] = b"~".join(lines[5].split(b"~")[:5] + [b"ERROR"] + lines[5].split(b"~")[6:])
    sales.write_bytes(b"\r\n".join(lines))
    (landing / "products_20241012.json").write_text('{"not": "an array"}')
    customers = landing / "customer_20241012.csv"
    customers.write_bytes(customers.read_bytes()[:20000])      # a truncated export
    return root


def applied(world: Path, root: Path) -> tuple[Path, RunResult]:
    """A copy of ``world`` at ``root`` after one uninterrupted run (in this process), and that
    run's result."""
    shutil.copytree(world, root)
    return root, minilake.run(root)


@pytest.fixture(scope="session")
def applied_world(world, tmp_path_factory) -> tuple[Path, RunResult]:
    """``world`` after one uninterrupted run, computed once for the module: the tests that
    start from it (or compare with it) copy it, never change it."""
    return applied(world, tmp_path_factory.mktemp("crash_reference") / "root")


@pytest.fixture(scope="session")
def reference(applied_world) -> dict:
    root, result = applied_world
    assert [f.file for f in result.ingest.quarantined] == ["customer_20241012.csv",
                                                           "products_20241012.json"]
    return outcome(root)


def run_cli(root: Path, env: dict | None = None, kill_after: float | None = None) -> int:
    """``minilake run`` on ``root`` to its end, or SIGKILLed ``kill_after`` seconds after its
    start; its exit status."""
    return run_timed(root, env, kill_after)[0]


def run_timed(root: Path, env: dict | None = None, kill_after: float | None = None
              ) -> tuple[int, float]:
    """:func:`run_cli`, and the seconds from the start to the end or the kill."""
    began = time.perf_counter()
    process = forked.start("run", "--root", str(root), env=env, scratch=root.parent)
    if kill_after is not None:
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
    done = finish(process)
    seconds = time.perf_counter() - began
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, seconds


def rerun(root: Path) -> int:
    """``minilake run --root ROOT`` to its end in this process (:func:`here`), for the run
    that finishes a killed one (only the killed run needs a process of its own); its exit
    status. What it writes to stderr must hold no traceback, as :func:`run_timed` asks of a
    child's stderr."""
    done = here("run", "--root", str(root))
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode


UNREADABLE = {"customer_20241012.csv", "products_20241012.json"}     # make_world's two


def rerun_status(root: Path) -> int:
    """The exit status of the run that finishes a killed one on a copy of ``make_world``:
    1 while it still quarantines one of the world's two unreadable files; 0 if the killed
    run had logged both (the sources go side by side: another source's may be logged before
    the kill), when the rerun only finishes moving them."""
    log = read_log(Layout.of(root))
    logged = set(log.loc[log["status"] == "quarantined", "file"])
    return 0 if UNREADABLE <= logged else 1


def crash_cases(duration: float) -> list[tuple[str, str | None, float | None]]:
    """Hook cases, then kills at random moments within an uninterrupted run's ``duration``
    (after the ~1 s of imports, where nothing happens yet)."""
    cases = []
    for hook, times in HOOKS.items():
        for n in (range(1, times + 1) if DEEP else SPREAD[times]):
            cases.append((f"{hook}:{n}", f"{hook}:{n}", None))
    rng = random.Random(5)
    cases += [(f"timed kill {i}", None, round(rng.uniform(0.5, 1.0) * duration, 2))
              for i in range(TIMED_KILLS)]
    return cases


CHUNKS = 8
KILL_TRIES = 5


@pytest.fixture(scope="session")
def cases(world, tmp_path_factory) -> list[tuple[str, str | None, float | None]]:
    timing = tmp_path_factory.mktemp("timing") / "root"
    shutil.copytree(world, timing)
    return crash_cases(run_timed(timing)[1])


def killed_at_a_random_moment(world: Path, root: Path, delay: float, rng: random.Random
                              ) -> float:
    """A copy of ``world`` at ``root``, its run SIGKILLed ``delay`` seconds after its start.
    A run that ends first (the machine less loaded than when the duration was measured) is
    tried again on a fresh copy, killed within the time it has just taken, so that every
    timed kill lands. Returns the delay of the kill that landed."""
    for _ in range(KILL_TRIES):
        shutil.copytree(world, root)
        status, seconds = run_timed(root, kill_after=delay)
        if status == -signal.SIGKILL:
            return delay
        assert status == 1, f"an uninterrupted run's exit status: {status}"
        shutil.rmtree(root)
        delay = round(rng.uniform(0.5, 1.0) * seconds, 2)
    pytest.fail(f"no kill landed in {KILL_TRIES} runs, the last one {delay} s after the start")


def test_the_harness_kills_at_50_or_more_named_points():
    hooks = [c for c in crash_cases(1.0) if c[1] is not None]
    assert len(hooks) >= 50 and len(set(hooks)) == len(hooks)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_crash_anywhere_then_rerun_equals_an_uninterrupted_run(chunk, cases, world, reference,
                                                                tmp_path):
    mine = range(chunk, len(cases), CHUNKS)
    survived = []
    for index in mine:
        case, hook, delay = cases[index]
        root = tmp_path / f"case{index}"
        if hook:
            shutil.copytree(world, root)
            killed = run_cli(root, {"MINILAKE_CRASH_AT": hook})
            assert killed == -signal.SIGKILL, f"{case}: the hook was not reached"
        else:
            delay = killed_at_a_random_moment(world, root, delay, random.Random(index))
        want = rerun_status(root)
        assert rerun(root) == want, f"{case}: the completing run's exit status"
        assert_same(outcome(root), reference, case)
        survived.append(case if hook else f"{case} at {delay} s")
        shutil.rmtree(root)
    print(f"\ncrash harness chunk {chunk}: {len(survived)} kills survived: {survived}")
    assert len(survived) == len(mine)              # every kill landed, timed ones included


# docs/contracts.md: a file's column changes are logged after its commit, once
DRIFT_HOOKS = ["commit.columns_added:1", "commit.columns_added:2", "commit.widening:1",
               "commit.widened:1", "ingest.after_commit:2", "ingest.after_commit:8",
               "ingest.schema_logged:1", "ingest.schema_logged:3"]


@pytest.fixture(scope="session")
def drift_world(tmp_path_factory) -> Path:
    """Three days whose second drifts in each form (a column more: added to the customer and
    sales tables, the product's discarded; the customer file a column fewer, kept empty)."""
    return drifting.world(tmp_path_factory.mktemp("drift_world") / "root")


def drift_outcome(root: Path) -> dict:
    return {**outcome(root), "changes": drifting.schema_changes(root)}


def killed_then_rerun(world: Path, hooks: list[str], tmp_path: Path, of) -> Iterator[tuple]:
    """``of`` (an outcome) of an uninterrupted run on a copy of ``world``, then, for each
    hook, of a copy killed there (SIGKILL) and run again: (hook, got, want), each."""
    want_root = tmp_path / "reference"
    shutil.copytree(world, want_root)
    assert rerun(want_root) == 0
    want = of(want_root)
    for hook in hooks:
        root = tmp_path / hook.replace(":", "_")
        shutil.copytree(world, root)
        assert run_cli(root, {"MINILAKE_CRASH_AT": hook}) == -signal.SIGKILL, \
            f"{hook}: the hook was not reached"
        assert rerun(root) == 0, hook
        yield hook, of(root), want
        shutil.rmtree(root)


def test_crash_around_a_column_change_then_rerun_equals_an_uninterrupted_run(drift_world,
                                                                             tmp_path):
    for hook, got, want in killed_then_rerun(drift_world, DRIFT_HOOKS, tmp_path,
                                             drift_outcome):
        # 2 columns added, 1 discarded, 4 missing (kept), 1 widened
        assert len(want["changes"]) == 9, want["changes"]
        notes = want["log"].set_index("file")["note"]
        assert all("updated in place" in notes[f"customer_2024101{d}.csv"] for d in (0, 1))
        assert_same(got, want, hook)
        pd.testing.assert_frame_equal(got["changes"], want["changes"], obj=hook)


READ_AHEAD = {"MINILAKE_SIDE_BY_SIDE_MB": "0"}     # one source at a time, reading ahead
READ_AHEAD_HOOKS = ["ingest.after_read:2", "ingest.after_read:6", "ingest.after_diff:3",
                    "ingest.before_commit:4", "ingest.after_commit:5", "ingest.logged:1",
                    "quarantine.after_log:1", "quarantine.after_reason:2"]


def test_one_source_at_a_time_reading_ahead_equals_side_by_side(world, reference, tmp_path,
                                                                monkeypatch):
    from minilake.load import ingest

    root = tmp_path / "root"
    shutil.copytree(world, root)
    assert run_cli(root, READ_AHEAD) == 1                   # the two files are quarantined
    assert_same(outcome(root), reference, "reading ahead")
    # the completing runs, in this process: READ_AHEAD's setting as the module reads it
    monkeypatch.setattr(ingest, "SIDE_BY_SIDE_UP_TO_BYTES",
                        int(READ_AHEAD["MINILAKE_SIDE_BY_SIDE_MB"]) << 20)
    for hook in READ_AHEAD_HOOKS:
        root = tmp_path / hook.replace(":", "_")
        shutil.copytree(world, root)
        killed = run_cli(root, {**READ_AHEAD, "MINILAKE_CRASH_AT": hook})
        assert killed == -signal.SIGKILL, f"{hook}: the hook was not reached"
        want = rerun_status(root)
        assert rerun(root) == want, hook
        assert_same(outcome(root), reference, f"reading ahead, killed at {hook}")


def one_day_waiting(root: Path, seed: int, waiting: str) -> Path:
    """Four generated days applied but the one dated ``waiting`` (YYYYMMDD), which then
    waits in the landing zone."""
    generate(root, start="2024-10-09", days=4, customers=200, seed=seed, landing_only=True)
    landing.run_without(root, f"*{waiting}*")
    return root


@pytest.fixture(scope="session")
def late_world(tmp_path_factory) -> Path:
    """Days 1, 2 and 4 applied; day 3 waiting in the landing zone (a late delivery)."""
    return one_day_waiting(tmp_path_factory.mktemp("late_world"), 13, "20241011")


# A late file repairs its source from its date on: killed while the table is rolled back,
# replayed, committed, and once it is (logged, or not yet), then in other sources' files.
REPAIR_HOOKS = ["repair.rolled_back:1", "repair.before_commit:1", "repair.after_commit:1",
                "repair.after_commit:3", "ingest.files_written:1", "ingest.report_written:3",
                "ingest.after_read:5"]


@pytest.fixture(scope="session")
def late_reference(late_world, tmp_path_factory) -> tuple[Path, RunResult]:
    """``late_world`` after one uninterrupted run, and its result (copied, never changed)."""
    return applied(late_world, tmp_path_factory.mktemp("late_reference") / "root")


def test_crash_during_a_repair_then_rerun_equals_an_uninterrupted_run(late_world,
                                                                     late_reference, tmp_path):
    want_root, result = late_reference
    assert result.ok
    want = outcome(want_root)

    def one(hook: str) -> tuple[str, int, dict]:
        root = tmp_path / hook.replace(":", "_")
        shutil.copytree(late_world, root)
        killed = run_cli(root, {"MINILAKE_CRASH_AT": hook})
        assert rerun(root) == 0, f"{hook}: the completing run's exit status"
        return hook, killed, outcome(root)

    for hook in REPAIR_HOOKS:
        hook, killed, got = one(hook)
        assert killed == -signal.SIGKILL, f"{hook}: the hook was not reached"
        assert_same(got, want, hook)


MAINTAIN_HOOKS = ["maintain.files_written:1", "maintain.after_commit:1",
                  "maintain.files_written:2", "maintain.checkpointed:1",
                  "maintain.orphans_removed:1"]


def referenced(root: Path) -> dict[str, set[str]]:
    """Per source table, the data files some version of it reads, and the data files on disk."""
    out = {}
    for source in ("customer", "product", "sales"):
        table = root / "tables" / source
        read = set()
        for version in minilake.versions(source, root)["version"]:
            read |= {os.path.relpath(uri.removeprefix("file://"), table)
                     for uri in DeltaTable(str(table), version=int(version)).file_uris()}
        on_disk = {str(p.relative_to(table)) for p in table.rglob("*.parquet")
                   if "_delta_log" not in p.parts}
        out[source] = (read, on_disk)
    return out


def test_maintenance_killed_anywhere_then_rerun_equals_an_uninterrupted_one(late_reference,
                                                                            tmp_path):
    """SIGKILL while ``maintain`` compacts, commits, checkpoints or cleans up, then ``maintain``
    again: the tables and logs equal an uninterrupted maintenance's, every version before it
    reads the rows it read, and no data file is left that no version reads."""
    base = late_reference[0]
    want_root = tmp_path / "want"
    shutil.copytree(base, want_root)
    before = {(s, int(v)): minilake.read_table(s, root=want_root, version=int(v))
              for s in ("customer", "product") for v in minilake.versions(s, want_root)["version"]}
    assert finish(start("maintain", "--root", str(want_root))).returncode == 0
    want = outcome(want_root)
    assert minilake.versions("customer", want_root)["operation"].iloc[-1] == "COMPACT"
    for hook in MAINTAIN_HOOKS:
        root = tmp_path / hook.replace(":", "_")
        shutil.copytree(base, root)
        killed = finish(start("maintain", "--root", str(root),
                              env={"MINILAKE_CRASH_AT": hook}))
        assert killed.returncode == -signal.SIGKILL, f"{hook}: the hook was not reached"
        again = finish(start("maintain", "--root", str(root)))
        assert again.returncode == 0, f"{hook}: {again.stderr}"
        assert_same(outcome(root), want, hook)
        for (source, version), frame in before.items():
            pd.testing.assert_frame_equal(minilake.read_table(source, root=root,
                                                              version=version), frame,
                                          obj=f"{hook}: {source} version {version}")
        for source, (read, on_disk) in referenced(root).items():
            assert on_disk == read, f"{hook}: {source}: files no version reads"


PULL_HOOKS = ["pull.page_written:1", "pull.page_written:2", "pull.page_written:3",
              "pull.before_land:1", "pull.after_land:1"]


def test_a_pull_killed_anywhere_leaves_no_partial_file_and_a_rerun_lands_the_day(
        httpserver, tmp_path):
    """SIGKILL during ``pull`` (docs/formats.md, the pull protocol): the landing zone holds the
    whole day or nothing."""
    token = "crash-token"
    for n, body in enumerate(['[{"a": 1}, {"a": 2}]', '[{"a": 3}]', '[{"a": 1.50}]'], 1):
        httpserver.expect_request("/sales", query_string={"date": "2024-10-09", "page": str(n)}
                                  ).respond_with_data(body, content_type="application/json")
    httpserver.expect_request("/sales").respond_with_data("", status=404)
    args = ["pull", "sales", "--date", "2024-10-09", "--url", httpserver.url_for("/")]
    env = {"MINILAKE_API_TOKEN": token}
    reference = tmp_path / "reference"
    (reference / "landing_zone").mkdir(parents=True)           # a root minilake made
    assert finish(start(*args, "--root", str(reference), env=env)).returncode == 0
    want = (reference / "landing_zone" / "sales_20241009.json").read_bytes()
    assert b'{"a": 1.50}' in want
    for hook in PULL_HOOKS:
        root = tmp_path / hook.replace(":", "_")
        (root / "landing_zone").mkdir(parents=True)
        killed = finish(start(*args, "--root", str(root),
                              env={**env, "MINILAKE_CRASH_AT": hook}))
        assert killed.returncode == -signal.SIGKILL, f"{hook}: the hook was not reached"
        landing = sorted((root / "landing_zone").glob("*")) if (root / "landing_zone"
                                                               ).is_dir() else []
        assert landing in ([], [root / "landing_zone" / "sales_20241009.json"]), hook
        assert all(p.read_bytes() == want for p in landing), f"{hook}: a partial file landed"
        again = finish(start(*args, "--root", str(root), env=env))
        assert again.returncode == 0, f"{hook}: {again.stderr}"
        assert [p.name for p in (root / "landing_zone").iterdir()] == ["sales_20241009.json"]
        assert (root / "landing_zone" / "sales_20241009.json").read_bytes() == want, hook


def test_an_export_killed_before_it_is_published_leaves_no_file(applied_world, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(applied_world[0], root)
    out = tmp_path / "out" / "sales.avro"
    args = ["export", "sales", "--out", str(out), "--root", str(root)]
    killed = finish(start(*args, env={"MINILAKE_CRASH_AT": "export.before_publish:1"}))
    assert killed.returncode == -signal.SIGKILL and not out.exists()
    assert finish(start(*args)).returncode == 0 and out.exists()
    assert [p.name for p in out.parent.iterdir()] == ["sales.avro"]


ERASURE_HOOKS = ["erasure.before_manifest:1", "erasure.planned:1", "erasure.file_replaced:1",
                 "erasure.file_replaced:3", "erasure.outputs_scrubbed:1",
                 "ingest.report_written:2", "repair.before_commit:1", "repair.after_commit:1",
                 "erasure.rebuilt:1", "erasure.checkpointed:1", "erasure.purged:1",
                 "erasure.marts_purged:1",
                 "erasure.logged:1", "erasure.request_rewritten:1", "erasure.request_logged:1"]


@pytest.fixture(scope="session")
def erasure_world(applied_world, tmp_path_factory) -> Path:
    """:func:`make_erasure_world`, from a copy of the module's applied crash world."""
    root = tmp_path_factory.mktemp("erasure_world") / "root"
    shutil.copytree(applied_world[0], root)
    return request_erasures(root)


def make_erasure_world(world: Path, root: Path) -> Path:
    """The crash world applied, then an erasure request for one customer by id and one by
    email (another letter case) waiting in the landing zone."""
    return request_erasures(applied(world, root)[0])


def request_erasures(root: Path) -> Path:
    """An erasure request for one current customer by id and one by email (another letter
    case) put in the landing zone of an applied crash world."""
    table = minilake.read_table("customer", root=root)
    current = table[table["is_current"]]
    request = [{"customer_id": str(current["customer_id"].iloc[0])},
               {"email": current["email"].iloc[1].upper()}]
    (root / "landing_zone" / "erasure_requests_20241013.json").write_text(json.dumps(request))
    return root


def erasure_outcome(root: Path) -> dict:
    from minilake.lake.logs import read_erasure_log

    out = outcome(root)
    out["log"] = out["log"].drop(columns=["mtime_ns"])      # rewritten files: when they were
    erased = read_erasure_log(Layout.of(root))
    out["erasures"] = erased.drop(columns=["erased_at", "history_from_version"])
    out["left"] = sorted(str(p.relative_to(root)) for p in (root / "tables").glob(".*/*"))
    return out


@pytest.mark.long
def test_crash_during_an_erasure_then_rerun_equals_an_uninterrupted_run(erasure_world,
                                                                        tmp_path):
    for hook, got, want in killed_then_rerun(erasure_world, ERASURE_HOOKS, tmp_path,
                                             erasure_outcome):
        assert len(want["erasures"]) == 2 and want["left"] == []
        assert_same(got, want, hook)
        pd.testing.assert_frame_equal(got["erasures"], want["erasures"], obj=hook)
        assert got["left"] == [], hook


def marts_of(root: Path) -> dict:
    out = {}
    for name in ("customer_monthly", "product_monthly", "daily_sales"):
        frame = minilake.read_mart(name, root).to_pandas()
        out[name] = frame.sort_values(list(frame.columns[:4])).reset_index(drop=True)
    return out


def assert_marts_caught_up(world: Path, reference: tuple[Path, RunResult], hook: str,
                           tmp_path: Path):
    """A run on a copy of ``world`` killed at ``hook``, then run again: its marts equal those
    of ``reference``, ``world`` after an uninterrupted run; that run's result."""
    want_root, result = reference
    assert result.ok
    root = tmp_path / "killed"
    shutil.copytree(world, root)
    assert run_cli(root, {"MINILAKE_CRASH_AT": hook}) == -signal.SIGKILL, hook
    assert rerun(root) == 0
    got, want = marts_of(root), marts_of(want_root)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], obj=f"{hook}: {name}")
    return result


@pytest.mark.parametrize("hook", ["marts.written:1", "marts.written:3", "repair.after_commit:2"])
def test_a_run_killed_before_its_marts_are_refreshed_is_caught_up(hook, late_world,
                                                                  late_reference, tmp_path):
    """The marts follow the ingest log: a run killed after its files were applied but before
    (or while) the marts were refreshed leaves the next run, with nothing new, to do it."""
    assert_marts_caught_up(late_world, late_reference, hook, tmp_path)


@pytest.fixture(scope="session")
def next_day_world(tmp_path_factory) -> Path:
    """Days 1-3 applied (marts made); day 4 waiting, in order: its marts are moved on."""
    return one_day_waiting(tmp_path_factory.mktemp("next_day_world"), 17, "20241012")


@pytest.fixture(scope="session")
def next_day_reference(next_day_world, tmp_path_factory) -> tuple[Path, RunResult]:
    """``next_day_world`` after one uninterrupted run, and its result (never changed)."""
    return applied(next_day_world, tmp_path_factory.mktemp("next_day_reference") / "root")


@pytest.mark.parametrize("hook", ["marts.kept:1", "marts.kept:2", "marts.written:2"])
def test_a_run_killed_while_moving_its_marts_on_is_caught_up(hook, next_day_world,
                                                             next_day_reference, tmp_path):
    """Killed after the customers' sums were moved on (their commit carries the log mark, so
    the rerun does not add the day twice), after the per-date rows, or between two marts:
    the rerun's marts equal an uninterrupted run's."""
    result = assert_marts_caught_up(next_day_world, next_day_reference, hook, tmp_path)
    assert result.months == [dt.date(2024, 10, 1)]                    # moved on, not in full


@pytest.fixture(scope="session")
def gone_world(tmp_path_factory) -> Path:
    """27 October to 1 November applied; 2 November waiting, whose refresh (November alone)
    looks up the last versions of customers gone before November (``raw.gone_before_november``)
    and keeps them."""
    root = tmp_path_factory.mktemp("gone_world")
    generate(root, start="2024-10-27", days=7, customers=300, seed=21, landing_only=True)
    raw.gone_before_november(root / "landing_zone")
    landing.run_without(root, "*20241102*")
    return root


def test_a_run_killed_after_keeping_the_gone_customers_is_caught_up(gone_world, tmp_path):
    """Killed right after the month's gone customers were kept, before the marts: the rerun
    reads them back and its marts equal an uninterrupted run's."""
    want_root = tmp_path / "reference"
    shutil.copytree(gone_world, want_root)
    assert minilake.run(want_root).months == [dt.date(2024, 11, 1)]
    root = tmp_path / "killed"
    shutil.copytree(gone_world, root)
    assert run_cli(root, {"MINILAKE_CRASH_AT": "marts.gone:1"}) == -signal.SIGKILL
    assert (root / "tables" / "marts" / "_gone_customers").is_dir()
    assert rerun(root) == 0
    got, want = marts_of(root), marts_of(want_root)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)


def referenced_files(table: Path) -> set[str]:
    """Data files (relative) some version of the table refers to, version by version."""
    from deltalake import DeltaTable

    latest = DeltaTable(str(table)).version()
    return {os.path.relpath(uri.removeprefix("file://"), table) for n in range(latest + 1)
            for uri in DeltaTable(str(table), version=n).file_uris()}


def test_vacuum_removes_exactly_the_files_a_killed_run_wrote_and_never_committed(world,
                                                                                tmp_path):
    root = tmp_path / "root"
    shutil.copytree(world, root)
    assert run_cli(root, {"MINILAKE_CRASH_AT": "ingest.files_written:6"}) == -signal.SIGKILL
    want = rerun_status(root)
    assert rerun(root) == want
    before = {s: minilake.read_table(s, root=root) for s in ("customer", "product", "sales")}
    orphans = {}
    for source in ("customer", "product", "sales"):
        table = root / "tables" / source
        on_disk = {str(p.relative_to(table)) for p in table.rglob("*.parquet")
                   if "_delta_log" not in p.parts}
        orphans[source] = sorted(on_disk - referenced_files(table))
    assert sum(map(len, orphans.values())) >= 1, "the kill left no unreferenced file"
    listed = minilake.vacuum(root, dry_run=True)
    assert {s: listed[s] for s in orphans} == orphans
    removed = minilake.vacuum(root)
    assert {s: removed[s] for s in orphans} == orphans
    for source, frame in before.items():
        table = root / "tables" / source
        assert not any((table / f).exists() for f in orphans[source])
        pd.testing.assert_frame_equal(minilake.read_table(source, root=root), frame)
        for n in range(1, 3):             # every version still reads: time travel untouched
            minilake.read_table(source, root=root, version=n)
