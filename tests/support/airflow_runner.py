"""Run the DAG file's DAG once with Airflow's own ``dag.test()``; print the task states, the
try each task reached and the earlier tries Airflow archived (one per retry that ran).

    python tests/support/airflow_runner.py dags/minilake_daily.py 2024-10-15

Started by tests/system/test_airflow.py in a child process whose environment holds a temporary
``AIRFLOW_HOME`` with a SQLite database.
"""

import datetime as dt
import importlib.util
import json
import sys

from airflow.models.taskinstancehistory import TaskInstanceHistory
from airflow.utils.session import create_session

spec = importlib.util.spec_from_file_location("minilake_daily", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
day = dt.datetime.fromisoformat(sys.argv[2]).replace(tzinfo=dt.UTC)
run = module.DAG.test(logical_date=day)
tis = run.get_task_instances()
with create_session() as session:
    earlier = [row.task_id for row in session.query(TaskInstanceHistory).filter_by(
        dag_id=run.dag_id, run_id=run.run_id)]
print("STATES " + json.dumps({ti.task_id: str(ti.state) for ti in tis}))
print("TRIES " + json.dumps({ti.task_id: ti.try_number for ti in tis}))
print("RETRIED " + json.dumps({ti.task_id: earlier.count(ti.task_id) for ti in tis}))
