"""The Airflow DAG (issue 15, README, On a schedule), run by Airflow itself (``dag.test()``) with a
temporary ``AIRFLOW_HOME`` and SQLite, on temporary roots."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import NamedTuple

import httpx
import pandas as pd
import pytest
from support.commands import HUNG_AFTER
from support.commands import sample_api as serving_sample_api

import minilake

pytestmark = pytest.mark.xdist_group("airflow")
REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "minilake_daily.py"
TASKS = ("wait_for_deliveries", "pull_api_sources", "run", "refresh_marts", "write_reports")
TOKEN = "tok-" + secrets.token_hex(12)
# The fixtures below are session-scoped: each made once per worker, not again each time
# xdist's order leaves this module and comes back to it.


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory) -> dict:
    """A migrated SQLite AIRFLOW_HOME; none of the shell's minilake settings or Airflow
    Variables (a developer's MINILAKE_API_URL would hide a missing one)."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("MINILAKE_", "AIRFLOW_VAR_"))}
    env |= {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "MINILAKE_SENSOR_TIMEOUT": "3", "MINILAKE_SENSOR_POKE": "1"}
    done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                          capture_output=True, text=True, timeout=HUNG_AFTER)
    assert done.returncode == 0, done.stderr[-2000:]
    return env


DAG_HUNG_AFTER = 1800    # seconds: a hang guard for one dag.test() (retries wait 5 min each)


class Run(NamedTuple):
    states: dict[str, str]
    tries: dict[str, int]
    retried: dict[str, int]           # earlier tries Airflow archived: one per retry that ran
    output: str


def runner(env: dict, *args: str, hung_after: float = DAG_HUNG_AFTER) -> tuple[str, str]:
    """tests/support/airflow_runner.py with ``args`` in a child process: its stdout and
    stderr. A child still running after ``hung_after`` seconds fails the test (dag_runs)."""
    child = subprocess.Popen([sys.executable, str(REPO / "tests" / "support" / "airflow_runner.py"),
                              str(DAG_FILE), *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=hung_after)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGABRT)                   # faulthandler prints the stacks
        try:
            stdout, stderr = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            stdout, stderr = child.communicate()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)            # whatever it started
        pytest.fail(f"dag.test() still running after {hung_after} s; its threads:\n"
                    f"{stderr[-6000:]}")
    return stdout, stderr


def parsed(stdout: str, output: str) -> Run:
    """The Run of a runner's output (``stdout``: the lines it prints; ``output``: all)."""
    said = {line.partition(" ")[0]: line.partition(" ")[2] for line in stdout.splitlines()
            if line.startswith(("STATES ", "TRIES ", "RETRIED "))}
    assert len(said) == 3, output[-3000:]
    return Run(json.loads(said["STATES"]), json.loads(said["TRIES"]),
               json.loads(said["RETRIED"]), output)


WARM = """
import datetime as dt
from airflow.sdk import PokeReturnValue, dag, task

@dag(dag_id="warm", schedule="@daily", start_date=dt.datetime(2024, 1, 1))
def warm():
    @task.sensor(poke_interval=1, timeout=1, mode="reschedule", soft_fail=True)
    def wait() -> PokeReturnValue:
        return PokeReturnValue(is_done=True)

    @task(retries=0)
    def work() -> None:
        pass

    wait() >> work()

warm()
"""


def test_the_dag_file_loads_nothing_but_the_standard_library_beside_airflow():
    """What the DAG processor pays per parse: beside what Airflow loads for any DAG (a
    sensor and a task on a daily schedule, made first, as a processor has), the file imports
    only the standard library: not minilake, nor pandas, pyarrow, delta-rs (the tasks import
    them when they run). Counted in modules, not seconds."""
    code = ("import importlib.util, json, sys\n" + WARM +
            "before = set(sys.modules)\n"
            "s = importlib.util.spec_from_file_location('d', sys.argv[1])\n"
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
            "new = {n.partition('.')[0] for n in set(sys.modules) - before}\n"
            "print(json.dumps([m.DAG.dag_id, sorted(new - set(sys.stdlib_module_names)\n"
            "                                       - {'airflow'})]))")
    done = subprocess.run([sys.executable, "-c", code, str(DAG_FILE)], capture_output=True,
                          text=True, timeout=HUNG_AFTER)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == ["minilake_daily", []]


# --- the DAG's runs: every case below by one child process, Airflow started once ----------

class Wrong(NamedTuple):
    variables: dict[str, str]         # Airflow Variables
    root: str | None                  # "folder" (an empty landing_zone/), "nowhere" or unset
    failing: str                      # the task that fails
    words: tuple[str, ...]            # what its one line says
    token: bool = True                # MINILAKE_API_TOKEN set


WRONG = {
    "api_sources_without_url": Wrong(
        {"minilake_api_sources": "sales"}, "folder", "pull_api_sources",
        ("no API URL", "minilake_api_url", "MINILAKE_API_URL")),
    "unknown_api_source": Wrong(
        {"minilake_api_sources": "sales, salse", "minilake_api_url": "http://127.0.0.1:9"},
        "folder", "pull_api_sources",
        ("no source 'salse'", "minilake_api_sources", "MINILAKE_API_SOURCES")),
    "api_sources_without_token": Wrong(
        {"minilake_api_sources": "sales", "minilake_api_url": "http://127.0.0.1:9"},
        "folder", "pull_api_sources", ("no API token", "MINILAKE_API_TOKEN"), token=False),
    "no_root": Wrong({}, None, "wait_for_deliveries",
                     ("no root", "minilake_root", "MINILAKE_ROOT")),
    "a_root_that_does_not_exist": Wrong(
        {}, "nowhere", "wait_for_deliveries",
        ("does not exist", "minilake_root", "MINILAKE_ROOT")),
}
# what a case may set; each case sets its own and leaves the others' out
SETTINGS = ["MINILAKE_ROOT", "MINILAKE_API_TOKEN", "AIRFLOW_VAR_MINILAKE_API_SOURCES",
            "AIRFLOW_VAR_MINILAKE_API_URL", "MINILAKE_LINEAGE"]


class Cases(NamedTuple):
    runs: dict[str, Run]              # case -> its DAG run
    roots: dict[str, Path]            # case -> the root it ran on (or was given)
    served: list[dict]                # the records the sample API served for the pulled day
    pulled_day: str                   # YYYYMMDD


def case(day: str, **settings: str | None) -> dict:
    """A runner case: ``settings`` (names of SETTINGS) set, every other one left out."""
    unknown = set(settings) - set(SETTINGS)
    assert not unknown, unknown
    return {"day": day, "environ": dict.fromkeys(SETTINGS) | settings}


@pytest.fixture(scope="session")
def dag_cases(airflow_env, committed, small_root, tmp_path_factory) -> Cases:
    """The DAG run of every case of this module, all by one child process, one after the
    other: Airflow starts once, not once a test (each start-up is ~10 s of a test worker).
    Each case has its own root, Variables and token; the sample API serves the pulled day
    while they run, and what it served is kept for the test."""
    base = tmp_path_factory.mktemp("dag_cases")
    roots, cases = {}, {}
    roots["week"] = base / "week"
    shutil.copytree(committed / "landing_zone", roots["week"] / "landing_zone")
    # both days' runs on one root; the second, all skipped (checked), leaves it as it was
    for day in ("2024-10-15", "2024-10-16"):
        cases[f"week {day}"] = case(day, MINILAKE_ROOT=str(roots["week"]),
                                    MINILAKE_LINEAGE="file")
    roots["truncated"] = base / "truncated"
    shutil.copytree(committed / "landing_zone", roots["truncated"] / "landing_zone")
    last = roots["truncated"] / "landing_zone" / "customer_20241015.csv"
    last.write_bytes(last.read_bytes()[:30000])
    cases["truncated"] = case("2024-10-15", MINILAKE_ROOT=str(roots["truncated"]))
    for name, wrong in WRONG.items():
        (base / name / "folder" / "landing_zone").mkdir(parents=True)
        settings = {f"AIRFLOW_VAR_{k.upper()}": v for k, v in wrong.variables.items()}
        if wrong.root is not None:
            settings["MINILAKE_ROOT"] = str(base / name / wrong.root)
        if wrong.token:
            settings["MINILAKE_API_TOKEN"] = TOKEN
        cases[name] = case("2024-10-15", **settings)
    with serving_sample_api(small_root / "landing_zone", base / "world", TOKEN) as (world, url):
        day = max(p.name[6:14] for p in (world / "landing_zone").glob("sales_*.txt"))
        date = f"{day[:4]}-{day[4:6]}-{day[6:]}"
        roots["pull"] = base / "pull"
        shutil.copytree(world / "landing_zone", roots["pull"] / "landing_zone")
        (roots["pull"] / "landing_zone" / f"sales_{day}.txt").unlink()
        cases["pull"] = case(date, MINILAKE_ROOT=str(roots["pull"]), MINILAKE_API_TOKEN=TOKEN,
                             AIRFLOW_VAR_MINILAKE_API_SOURCES="sales",
                             AIRFLOW_VAR_MINILAKE_API_URL=url)
        runs = dag_runs({**airflow_env, "PYTHONFAULTHANDLER": "1"}, cases,
                        base / "cases.json")
        records = served(url, "sales", date)
    roots["world"] = world
    return Cases(runs, roots, records, day)


def dag_runs(env: dict, cases: dict[str, dict], file: Path) -> dict[str, Run]:
    """The ``dag.test()`` of each case (``{"day": ..., "environ": {name: value or None}}``),
    in their order, by one child process (``airflow_runner.py --cases``, the cases written to
    ``file``): Airflow starts once. Each case's Run holds its own output only."""
    file.write_text(json.dumps(cases))
    stdout, stderr = runner(env, "--cases", str(file), hung_after=DAG_HUNG_AFTER * len(cases))
    runs = {}
    for name in cases:
        begin, end = f"CASE {name}\n", f"END {name}\n"
        assert begin in stdout and end in stdout, f"{name}: {(stdout + stderr)[-3000:]}"
        own = stdout.partition(begin)[2].partition(end)[0]
        runs[name] = parsed(own, own)
    return runs


def test_the_dag_applies_the_sample_week_then_skips_a_day_with_nothing_new(
        dag_cases, committed, tmp_path):
    by_dag, by_hand = dag_cases.roots["week"], tmp_path / "plain"
    shutil.copytree(committed / "landing_zone", by_hand / "landing_zone")
    run = dag_cases.runs["week 2024-10-15"]
    assert run.states == dict.fromkeys(TASKS, "success"), run.output[-3000:]
    assert minilake.run(by_hand).ok
    for name in ("customer", "product", "sales"):
        pd.testing.assert_frame_equal(minilake.read_table(name, root=by_dag),
                                      minilake.read_table(name, root=by_hand), obj=name)
    assert (by_dag / "reports" / "customer_growth.csv").is_file()

    run = dag_cases.runs["week 2024-10-16"]                   # nothing arrived
    assert set(run.states.values()) == {"skipped"}


def test_a_truncated_snapshot_fails_the_run_task_with_the_reason(dag_cases):
    run = dag_cases.runs["truncated"]
    assert run.states["run"] == "failed" and run.states["write_reports"] == "upstream_failed"
    assert "customer/customer_20241015.csv: quarantined: would expire" in run.output


# --- settings that are missing or wrong: the task that reads one fails at once ----------------

@pytest.mark.parametrize("name", WRONG)
def test_a_wrong_setting_fails_its_task_at_once_naming_it(dag_cases, name):
    """Without retries (a retry would find the same setting), so that the run, and
    ``airflow dags test`` with it, ends failed instead of waiting for retries."""
    wrong = WRONG[name]
    run = dag_cases.runs[name]
    assert run.states[wrong.failing] == "failed", run.output[-3000:]    # not up_for_retry
    assert run.tries[wrong.failing] == 1 and run.retried[wrong.failing] == 0   # no retry
    after = TASKS[TASKS.index(wrong.failing) + 1:]
    assert all(run.states[task] == "upstream_failed" for task in after), run.states
    assert any(all(word in line for word in wrong.words) for line in run.output.splitlines()), \
        run.output[-3000:]


# --- a day pulled from an API on this machine -----------------------------------------------

def served(url: str, source: str, day: str) -> list[dict]:
    """Every record the API serves for that day, page by page until a 404."""
    records: list[dict] = []
    with httpx.Client(headers={"Authorization": TOKEN}, timeout=HUNG_AFTER) as client:
        for page in range(1, 1000):
            answer = client.get(f"{url}/{source}", params={"date": day, "page": page})
            if answer.status_code == 404 or answer.json() == []:
                return records
            answer.raise_for_status()
            records += answer.json()
    raise AssertionError("the API never ran out of pages")


def test_the_dag_pulls_the_day_from_the_api_and_applies_it(dag_cases, tmp_path):
    """The day's sales come only from the API: the pull lands them and ``run`` applies them,
    to the same table as the day's file gives."""
    by_dag, by_hand, day = dag_cases.roots["pull"], tmp_path / "plain", dag_cases.pulled_day
    shutil.copytree(dag_cases.roots["world"] / "landing_zone", by_hand / "landing_zone")
    run = dag_cases.runs["pull"]
    assert run.states == dict.fromkeys(TASKS, "success"), run.output[-3000:]
    records = dag_cases.served
    pulls = minilake.pulls(by_dag)
    assert list(pulls["outcome"]) == ["landed"] and pulls["pages"].iloc[0] > 1
    assert pulls["records"].iloc[0] == len(records) > 0
    assert f"landed as landing_zone/sales_{day}.json" in run.output
    assert (by_dag / "archive" / "sales" / f"sales_{day}.json").is_file()

    sales = minilake.read_table("sales", root=by_dag)
    current = sales[sales["is_current"]].set_index("sale_id")
    expected = pd.DataFrame(records).drop_duplicates("sale_id", keep="last").set_index("sale_id")
    assert (current.loc[expected.index, expected.columns].astype(str)
            == expected.astype(str)).all().all()
    assert minilake.run(by_hand).ok
    pd.testing.assert_frame_equal(sales, minilake.read_table("sales", root=by_hand))


def test_the_dag_s_lineage_names_its_run_task_as_the_parent(dag_cases):
    """docs/quality.md: the run the DAG's ``run`` task makes names that task as Airflow's
    OpenLineage provider does (job ``minilake_daily.run``; a static UUID, version 7, whose
    time is the logical date's), and its files' events name it as their root."""
    folder = dag_cases.roots["week"] / "reports" / "lineage"
    (path,) = folder.glob("*.ndjson")              # the second day skipped: no run
    events = [json.loads(line) for line in path.read_text().splitlines()]
    start = next(e for e in events if e["job"]["name"] == "run")
    parent = start["run"]["facets"]["parent"]
    assert parent["job"]["name"] == "minilake_daily.run"
    run_id = uuid.UUID(parent["run"]["runId"])
    assert run_id.version == 7
    logical = dt.datetime(2024, 10, 15, tzinfo=dt.UTC)
    assert run_id.int >> 80 == int(logical.timestamp() * 1000)      # its first 48 bits
    roots = {e["run"]["facets"]["parent"]["root"]["run"]["runId"]
             for e in events if e["job"]["name"].startswith("ingest.")}
    assert roots == {str(run_id)}
