"""minilake's daily run under Airflow (README.md, the job server): DAG ``minilake_daily``.

    wait_for_deliveries ─▶ pull_api_sources ─▶ run ─▶ refresh_marts ─▶ write_reports

Settings (read when a task runs; Airflow Variable first, else the environment):
- ``minilake_root`` / ``MINILAKE_ROOT``: the root (required), an existing folder or an
  ``s3://bucket/prefix``;
- ``minilake_api_sources`` / ``MINILAKE_API_SOURCES``: sources to pull for the logical date,
  comma-separated (none by default), from ``minilake_api_url`` / ``MINILAKE_API_URL`` (required
  when sources are named) with the token in the worker's ``MINILAKE_API_TOKEN`` (never a
  Variable: it would be stored and shown);
- the marts (README.md, marts and SQL) are moved on by ``refresh_marts`` from what ``run``'s files
changed;
- ``MINILAKE_SENSOR_TIMEOUT`` / ``MINILAKE_SENSOR_POKE`` (seconds, read when the file is parsed):
  how long to wait for deliveries (6 h) and how often to look (5 min). When nothing arrives in
  time the run is skipped, not failed.

A setting that is missing or wrong (no root, a local root that is no folder, an unknown source,
sources named without a URL or a token) fails the task that reads it at once, with one line
naming the Variable and the environment variable, and without retries: a retry would find the
same setting, and ``airflow dags test`` would sit waiting for it. The sensor checks the root
before it pokes, since its ``soft_fail`` turns a failure inside the poke into a skip.

Tasks call minilake's public API only, and import it inside the task: this file is parsed often
and must stay quick to import. A quarantined file fails ``run`` with the one-line reason and
without retries (the data, not the machine, is wrong); every other failure (an API answering
5xx, a busy root) is retried, and ``max_active_runs=1`` with the root's lock keeps writers apart.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import NoReturn
from urllib.parse import urlsplit

from airflow.sdk import PokeReturnValue, Variable, dag, task

TIMEOUT = float(os.environ.get("MINILAKE_SENSOR_TIMEOUT", 6 * 3600))
POKE = float(os.environ.get("MINILAKE_SENSOR_POKE", 300))


def _setting(variable: str, env: str) -> str:
    return (Variable.get(variable, default=None) or os.environ.get(env, "")).strip()


def _named(variable: str, env: str) -> str:
    return f"the Airflow Variable {variable} or the environment variable {env}"


def _fail(line: str) -> NoReturn:
    """Fails the task now, without retries: a wrong setting (or a quarantined file) stays
    wrong until someone fixes it."""
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(line)


def _root() -> str:
    root = _setting("minilake_root", "MINILAKE_ROOT")
    if not root:
        _fail(f"no root: set {_named('minilake_root', 'MINILAKE_ROOT')}")
    # an S3 root is checked by minilake itself: "cannot reach it" may pass, and is retried
    if "://" not in root and not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        _fail(f"root {root} {what}: set {_named('minilake_root', 'MINILAKE_ROOT')} to the "
              f"folder that holds landing_zone/")
    return root


def _check_root(context) -> None:
    """The sensor's pre_execute hook: a failure inside its poke would be skipped (soft_fail)."""
    _root()


def _api_sources() -> list[str]:
    text = _setting("minilake_api_sources", "MINILAKE_API_SOURCES")
    return [s.strip() for s in text.split(",") if s.strip()]


def _api_url(sources: list[str]) -> str:
    """The URL to pull ``sources`` from, once the sources, the URL and the token are usable
    (else minilake's ValueError would be retried like a failing API)."""
    from minilake.contract.sources import SOURCES

    names = _named("minilake_api_sources", "MINILAKE_API_SOURCES")
    for source in sources:
        if source not in SOURCES:
            _fail(f"no source {source!r} (sources: {', '.join(SOURCES)}): fix {names}")
    url = _setting("minilake_api_url", "MINILAKE_API_URL")
    if not url:
        _fail(f"sources to pull ({', '.join(sources)}) but no API URL: set "
              f"{_named('minilake_api_url', 'MINILAKE_API_URL')}")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        _fail(f"the API URL is not an http(s) URL with a host: fix "
              f"{_named('minilake_api_url', 'MINILAKE_API_URL')}")
    if not os.environ.get("MINILAKE_API_TOKEN"):
        _fail("sources to pull but no API token: set the environment variable "
              "MINILAKE_API_TOKEN where the tasks run")
    return url


@dag(dag_id="minilake_daily", schedule="@daily", start_date=dt.datetime(2024, 1, 1),
     catchup=False, max_active_runs=1, tags=["minilake"],
     default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5)},
     doc_md=__doc__)
def minilake_daily():
    @task.sensor(poke_interval=POKE, timeout=TIMEOUT, mode="reschedule", soft_fail=True,
                 pre_execute=_check_root)
    def wait_for_deliveries() -> PokeReturnValue:
        """Done when a file of a source waits in landing_zone/ (or an API is to be pulled)."""
        from minilake.contract.sources import source_of
        from minilake.lake import storage
        from minilake.lake.layout import Layout

        # through minilake's storage seam: a folder or s3://bucket/prefix alike
        landing = Layout.of(_root()).landing
        waiting = sorted(path.name for path, _, _ in storage.listing(landing)
                         if source_of(path.name))
        return PokeReturnValue(is_done=bool(waiting or _api_sources()),
                               xcom_value=waiting)

    @task
    def pull_api_sources(logical_date=None) -> list[str]:
        """Lands the logical date's day of each API source, for ``run`` to apply with the
        files; sources it cannot pull as set fail it before any request."""
        import minilake

        root, sources = _root(), _api_sources()
        if not sources:
            return []
        url = _api_url(sources)
        lines = []
        for source in sources:
            result = minilake.pull(source, logical_date.date(), root, url, progress=False)
            print(result.line())
            if result.outcome == "quarantined":
                _fail(result.line())
            lines.append(result.line())
        return lines

    @task(retries=0)
    def run(ti=None, dag_run=None) -> list[str] | None:
        """split + ingest; returns the months whose marts the files touched (None: all). Its
        OpenLineage events name this task as their parent (docs/quality.md)."""
        import minilake

        parent = minilake.task_parent(ti.dag_id, ti.task_id, ti.try_number, ti.map_index,
                                      dag_run.logical_date or dag_run.run_after)
        result = minilake.run(_root(), progress=False, marts=False, lineage_parent=parent)
        for line in result.lines():
            print(line)
        if result.ingest.quarantined:
            _fail("; ".join(f"{f.source}/{f.file}: quarantined: {f.reason}"
                            for f in result.ingest.quarantined))
        return None if result.months is None else [m.isoformat() for m in result.months]

    @task
    def refresh_marts(months: list[str] | None) -> str:
        import minilake

        if months == []:
            return "no month touched: nothing to refresh"
        # moved on from what the run's files changed (in full after a rebuild or an erasure)
        _, written = minilake.refresh_marts(_root())
        return ", ".join(f"{name}: {rows} rows" for name, rows in written.items())

    @task
    def write_reports() -> list[str]:
        from minilake import reports

        return sorted(reports.write_reports(_root()))

    months = run()
    wait_for_deliveries() >> pull_api_sources() >> months
    refresh_marts(months) >> write_reports()


DAG = minilake_daily()
