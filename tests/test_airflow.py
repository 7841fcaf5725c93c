"""The Airflow DAG (issue 15, SPEC §10), run by Airflow itself (``dag.test()``) with a
temporary ``AIRFLOW_HOME`` and SQLite, on temporary roots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import minilake

pytestmark = pytest.mark.xdist_group("airflow")
REPO = Path(__file__).resolve().parents[1]
DAG_FILE = REPO / "dags" / "minilake_daily.py"


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
           "MINILAKE_SENSOR_TIMEOUT": "3", "MINILAKE_SENSOR_POKE": "1"}
    done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return env


def dag_run(env: dict, root: Path, day: str) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, str(REPO / "tests" / "airflow_runner.py"),
                           str(DAG_FILE), day], env={**env, "MINILAKE_ROOT": str(root)},
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    states = [line for line in done.stdout.splitlines() if line.startswith("STATES ")]
    assert states, output[-3000:]
    return json.loads(states[-1][len("STATES "):]), output


def test_the_dag_file_imports_in_under_two_seconds():
    """What the DAG processor pays per parse (Airflow itself is loaded already)."""
    code = ("import importlib.util, time, sys\nimport airflow.sdk\n"
            "from airflow.providers.standard.decorators import sensor\n"
            "t = time.perf_counter()\n"
            "s = importlib.util.spec_from_file_location('d', sys.argv[1])\n"
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
            "print(time.perf_counter() - t, m.DAG.dag_id, 'minilake' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(DAG_FILE)], capture_output=True,
                          text=True, timeout=120)
    seconds, dag_id, loaded = done.stdout.splitlines()[-1].split()
    assert dag_id == "minilake_daily" and loaded == "False"     # minilake only in tasks
    assert float(seconds) < 2.0


def test_the_dag_applies_the_sample_week_then_skips_a_day_with_nothing_new(
        airflow_env, committed, tmp_path):
    by_dag, by_hand = tmp_path / "dag", tmp_path / "plain"
    for root in (by_dag, by_hand):
        shutil.copytree(committed / "landing_zone", root / "landing_zone")
    states, output = dag_run(airflow_env, by_dag, "2024-10-15")
    assert states == {t: "success" for t in ("wait_for_deliveries", "pull_api_sources", "run",
                                              "refresh_marts", "write_reports")}, output[-3000:]
    assert minilake.run(by_hand).ok
    for name in ("customer", "product", "sales"):
        pd.testing.assert_frame_equal(minilake.read_table(name, root=by_dag),
                                      minilake.read_table(name, root=by_hand), obj=name)
    assert (by_dag / "reports" / "customer_growth.csv").is_file()

    states, _ = dag_run(airflow_env, by_dag, "2024-10-16")      # nothing arrived
    assert set(states.values()) == {"skipped"}


def test_a_truncated_snapshot_fails_the_run_task_with_the_reason(airflow_env, committed,
                                                                 tmp_path):
    root = tmp_path / "root"
    shutil.copytree(committed / "landing_zone", root / "landing_zone")
    last = root / "landing_zone" / "customer_20241015.csv"
    last.write_bytes(last.read_bytes()[:30000])
    states, output = dag_run(airflow_env, root, "2024-10-15")
    assert states["run"] == "failed" and states["write_reports"] == "upstream_failed"
    assert "customer/customer_20241015.csv: quarantined: would expire" in output
