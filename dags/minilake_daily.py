"""minilake's daily run under Airflow (SPEC §10): DAG ``minilake_daily``.

    wait_for_deliveries ─▶ pull_api_sources ─▶ run ─▶ refresh_marts ─▶ write_reports

Settings (read when a task runs; Airflow Variable first, else the environment):
- ``minilake_root`` / ``MINILAKE_ROOT``: the root (required);
- ``minilake_api_sources`` / ``MINILAKE_API_SOURCES``: sources to pull for the logical date,
  comma-separated (none by default), from ``minilake_api_url`` / ``MINILAKE_API_URL`` with the
  token in the worker's ``MINILAKE_API_TOKEN`` (never a Variable: it would be stored and shown);
- the marts (SPEC §11) are moved on by ``refresh_marts`` from what ``run``'s files changed;
- ``MINILAKE_SENSOR_TIMEOUT`` / ``MINILAKE_SENSOR_POKE`` (seconds, read when the file is parsed):
  how long to wait for deliveries (6 h) and how often to look (5 min). When nothing arrives in
  time the run is skipped, not failed.

Tasks call minilake's public API only, and import it inside the task: this file is parsed often
and must stay quick to import. A quarantined file fails ``run`` with the one-line reason and
without retries (the data, not the machine, is wrong); every other task is safe to retry, and
``max_active_runs=1`` with the root's lock keeps writers apart.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import PokeReturnValue, Variable, dag, task

TIMEOUT = float(os.environ.get("MINILAKE_SENSOR_TIMEOUT", 6 * 3600))
POKE = float(os.environ.get("MINILAKE_SENSOR_POKE", 300))


def _setting(variable: str, env: str, default: str = "") -> str:
    return Variable.get(variable, default=None) or os.environ.get(env, default)


def _root() -> str:
    root = _setting("minilake_root", "MINILAKE_ROOT")
    if not root:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("no root: set the Airflow Variable minilake_root or the "
                                   "environment variable MINILAKE_ROOT")
    return root


def _api_sources() -> list[str]:
    text = _setting("minilake_api_sources", "MINILAKE_API_SOURCES")
    return [s.strip() for s in text.split(",") if s.strip()]


@dag(dag_id="minilake_daily", schedule="@daily", start_date=dt.datetime(2024, 1, 1),
     catchup=False, max_active_runs=1, tags=["minilake"],
     default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5)},
     doc_md=__doc__)
def minilake_daily():
    @task.sensor(poke_interval=POKE, timeout=TIMEOUT, mode="reschedule", soft_fail=True)
    def wait_for_deliveries() -> PokeReturnValue:
        """Done when a file of a source waits in landing_zone/ (or an API is to be pulled)."""
        from pathlib import Path

        from minilake.sources import source_of

        landing = Path(_root()) / "landing_zone"
        waiting = sorted(p.name for p in landing.glob("*") if p.is_file()
                         and source_of(p.name)) if landing.is_dir() else []
        return PokeReturnValue(is_done=bool(waiting or _api_sources()),
                               xcom_value=waiting)

    @task
    def pull_api_sources(logical_date=None) -> list[str]:
        from airflow.sdk.exceptions import AirflowFailException

        import minilake

        lines = []
        for source in _api_sources():
            url = _setting("minilake_api_url", "MINILAKE_API_URL")
            result = minilake.pull(source, logical_date.date(), _root(), url or None,
                                   progress=False)
            print(result.line())
            if result.outcome == "quarantined":
                raise AirflowFailException(result.line())
            lines.append(result.line())
        return lines

    @task(retries=0)
    def run() -> list[str] | None:
        """split + ingest; returns the months whose marts the files touched (None: all)."""
        from airflow.sdk.exceptions import AirflowFailException

        import minilake

        result = minilake.run(_root(), progress=False, marts=False)
        for line in result.lines():
            print(line)
        if result.ingest.quarantined:
            raise AirflowFailException("; ".join(
                f"{f.source}/{f.file}: quarantined: {f.reason}"
                for f in result.ingest.quarantined))
        return None if result.months is None else [m.isoformat() for m in result.months]

    @task
    def refresh_marts(months: list[str] | None) -> str:
        from minilake.outbound import datamarts

        if months == []:
            return "no month touched: nothing to refresh"
        # moved on from what the run's files changed (in full after a rebuild or an erasure)
        _, written = datamarts.catch_up(_root())
        return ", ".join(f"{name}: {rows} rows" for name, rows in written.items())

    @task
    def write_reports() -> list[str]:
        from minilake.outbound import reports

        return sorted(reports.write_reports(_root()))

    months = run()
    wait_for_deliveries() >> pull_api_sources() >> months
    refresh_marts(months) >> write_reports()


DAG = minilake_daily()
