"""Run the DAG file's DAG once with Airflow's own ``dag.test()``; print the task states, the
try each task reached and how long ``dag.test()`` took.

    python tests/airflow_runner.py dags/minilake_daily.py 2024-10-15

Started by tests/test_airflow.py in a child process whose environment holds a temporary
``AIRFLOW_HOME`` with a SQLite database.
"""

import datetime as dt
import importlib.util
import json
import sys
import time

spec = importlib.util.spec_from_file_location("minilake_daily", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
day = dt.datetime.fromisoformat(sys.argv[2]).replace(tzinfo=dt.UTC)
started = time.monotonic()
run = module.DAG.test(logical_date=day)
seconds = time.monotonic() - started
tis = run.get_task_instances()
print("STATES " + json.dumps({ti.task_id: str(ti.state) for ti in tis}))
print("TRIES " + json.dumps({ti.task_id: ti.try_number for ti in tis}))
print(f"SECONDS {seconds:.1f}")
