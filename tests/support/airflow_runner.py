"""Run the DAG file's DAG once with Airflow's own ``dag.test()``; print the task states, the
try each task reached and the earlier tries Airflow archived (one per retry that ran).

    python tests/support/airflow_runner.py dags/minilake_daily.py 2024-10-15

Started by tests/system/test_airflow.py in a child process whose environment holds a temporary
``AIRFLOW_HOME`` with a SQLite database.

    python tests/support/airflow_runner.py dags/minilake_daily.py --cases CASES.json

runs several such DAG runs one after the other in this one process (Airflow's start-up paid
once): CASES.json maps a case's name to ``{"day": ..., "environ": {name: value or null}}``,
the environment variables (Airflow Variables as ``AIRFLOW_VAR_*``) set, or removed when null,
for that run alone; the settings are read when a task runs. Each run's lines, whatever they
were written to (stderr goes to stdout here, so that they keep their order), come after a line
``CASE name`` and end with a line ``END name``.
"""

import datetime as dt
import importlib.util
import json
import os
import sys
import traceback

from airflow.models.taskinstancehistory import TaskInstanceHistory
from airflow.utils.session import create_session

spec = importlib.util.spec_from_file_location("minilake_daily", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)


def one(date: str) -> None:
    day = dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC)
    run = module.DAG.test(logical_date=day)
    tis = run.get_task_instances()
    with create_session() as session:
        earlier = [row.task_id for row in session.query(TaskInstanceHistory).filter_by(
            dag_id=run.dag_id, run_id=run.run_id)]
    print("STATES " + json.dumps({ti.task_id: str(ti.state) for ti in tis}))
    print("TRIES " + json.dumps({ti.task_id: ti.try_number for ti in tis}))
    print("RETRIED " + json.dumps({ti.task_id: earlier.count(ti.task_id) for ti in tis}))


if sys.argv[2] != "--cases":
    one(sys.argv[2])
else:
    with open(sys.argv[3], encoding="utf-8") as file:
        cases = json.load(file)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(sys.stdout.fileno(), sys.stderr.fileno())
    before = dict(os.environ)
    for name, case in cases.items():
        print(f"CASE {name}", flush=True)
        os.environ.clear()
        os.environ.update(before)
        for variable, value in case["environ"].items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value
        try:
            one(case["day"])
        except Exception:             # the test of this case fails; the next ones still run
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"END {name}", flush=True)
