"""OpenLineage events (docs/quality.md): what a run read and wrote, for Marquez or any other
lineage service, through the official client (``openlineage-python``).

A run emits a START when it begins and a COMPLETE (or a FAIL with the error) when it ends,
as job ``run``; in between, for each file the run logged, a START and a COMPLETE (a FAIL for
a file quarantined, with its reason) as job ``ingest.<source>``, its parent the run. A
file's event names its input, the delivery in ``archive/`` (or ``quarantine/``), with its row
count and one assertion per rule of its source (did any row break it), and its output, the
source's Delta table, with the version the file made and its columns. A run started by a
scheduler names the scheduler's run as its parent (and so as the root of its files'): the
Airflow DAG passes its task's.

Where the events go: ``MINILAKE_LINEAGE_URL`` set, to that service over HTTP (with
``MINILAKE_LINEAGE_API_KEY`` as a bearer key if set); else, with ``MINILAKE_LINEAGE=file``,
on a local root, to ``reports/lineage/<run-id>.ndjson``, one event a line; else nowhere, and
the client is not even imported (its import alone takes 0.5-0.7 s, half a normal day's run
at 1x: docs/quality.md). The namespace of the jobs is ``MINILAKE_LINEAGE_NAMESPACE`` (default
``minilake``). An event that cannot be delivered is said in one line and the run goes on:
lineage is a record of the run, not a part of it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass

from minilake.contract.sources import ALL_SOURCES
from minilake.lake import delta, logs, storage
from minilake.lake.layout import Layout
from minilake.load.rejects import report_of
from minilake.load.validate import reason_counts

log = logging.getLogger(__name__)

URL_ENV, KEY_ENV, NAMESPACE_ENV = ("MINILAKE_LINEAGE_URL", "MINILAKE_LINEAGE_API_KEY",
                                   "MINILAKE_LINEAGE_NAMESPACE")
MODE_ENV = "MINILAKE_LINEAGE"           # "file": events to reports/lineage/ (no URL set)
RUN_JOB = "run"
LOG_COLUMNS = ["source", "file", "status", "reason", "event", "rows_read", "rows_loaded",
               "rows_rejected", "table_version", "started_at", "finished_at"]


@dataclass(frozen=True)
class Parent:
    """The run that started this one (a scheduler's task): its job and run id."""

    namespace: str
    name: str
    run_id: str


def _dataset(path) -> tuple[str, str]:
    """A path's OpenLineage namespace and name: ``file`` and the absolute path on a local
    root, ``s3://bucket`` and the key on S3 (the naming of the OpenLineage spec)."""
    if storage.is_local(path):
        return "file", str(path)
    uri = storage.uri(path)
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return f"s3://{bucket}", key


class RunLineage:
    """The events of one run; :meth:`start` when it begins, :meth:`finish` when it ends."""

    def __init__(self, layout: Layout, run_id: str, parent: Parent | None = None):
        self.layout, self.parent = layout, parent
        self.namespace = os.environ.get(NAMESPACE_ENV) or "minilake"
        self.client, self.where = _client(layout, run_id)
        self.undelivered = 0            # events not sent (the service did not answer)
        if self.client is not None:
            from openlineage.client.uuid import generate_new_uuid

            self.run_uuid = str(generate_new_uuid())

    def _emit(self, event) -> None:
        """One event sent; after one that could not be, the run's others are not tried (a
        service that is down would hold the run up by its timeout an event), and counted."""
        if self.undelivered:
            self.undelivered += 1
            return
        try:
            self.client.emit(event)
        except Exception as error:      # noqa: BLE001 - a record of the run, not part of it
            self.undelivered = 1
            log.warning("lineage: an event for %s was not delivered to %s (%s); the run's "
                        "later events are not sent", event.job.name, self.where,
                        str(error).splitlines()[0][:200])

    def _event(self, state: str, when: dt.datetime, job: str, run_id: str, facets: dict,
               inputs: list | None = None, outputs: list | None = None):
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

        return RunEvent(eventType=getattr(RunState, state), eventTime=when.isoformat(),
                        run=Run(runId=run_id, facets=facets),
                        job=Job(namespace=self.namespace, name=job),
                        inputs=inputs or [], outputs=outputs or [])

    def _parent_facets(self) -> dict:
        from openlineage.client.facet_v2 import parent_run

        if self.parent is None:
            return {}
        return {"parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=self.parent.run_id),
            job=parent_run.Job(namespace=self.parent.namespace, name=self.parent.name))}

    def start(self, when: dt.datetime) -> None:
        if self.client is not None:
            self._emit(self._event("START", when, RUN_JOB, self.run_uuid,
                                   self._parent_facets()))

    def finish(self, started: dt.datetime, error: BaseException | None = None) -> None:
        """The events of the files the run logged (from the ingest log), then the run's."""
        if self.client is None:
            return
        from openlineage.client.facet_v2 import error_message_run

        for row in _logged_since(self.layout, started):
            self._file_events(row)
        facets = self._parent_facets()
        if error is not None:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=str(error) or type(error).__name__, programmingLanguage="python")
        self._emit(self._event("FAIL" if error is not None else "COMPLETE",
                               dt.datetime.now(dt.UTC), RUN_JOB, self.run_uuid, facets))
        if self.undelivered:
            log.warning("lineage: %d event(s) of this run not delivered to %s",
                        self.undelivered, self.where)

    def _file_events(self, row: dict) -> None:
        from openlineage.client.event_v2 import InputDataset, OutputDataset
        from openlineage.client.facet_v2 import (
            data_quality_assertions_dataset,
            data_quality_metrics_input_dataset,
            dataset_version_dataset,
            error_message_run,
            output_statistics_output_dataset,
            parent_run,
        )
        from openlineage.client.uuid import generate_new_uuid

        source = ALL_SOURCES[row["source"]]
        quarantined = row["status"] == "quarantined"
        folder = self.layout.root / ("quarantine" if quarantined else "archive") / source.name
        namespace, name = _dataset(folder / row["file"])
        checks = [data_quality_assertions_dataset.Assertion(assertion=a, success=n == 0,
                                                            column=c, actual=str(n))
                  for c, a, n in _assertions(self.layout, source, row)]
        file_input = InputDataset(namespace=namespace, name=name, inputFacets={
            "dataQualityMetrics":
                data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
                    columnMetrics={}, rowCount=int(row["rows_read"])),
            "dataQualityAssertions":
                data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                    assertions=checks)})
        outputs = []
        if not quarantined and source.name != "erasure_requests":
            table = self.layout.table(source.name)
            namespace, name = _dataset(table)
            facets = {"schema": _schema(table)}
            if row["table_version"] is not None:
                facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                    datasetVersion=str(int(row["table_version"])))
            outputs.append(OutputDataset(namespace=namespace, name=name, facets=facets,
                                         outputFacets={"outputStatistics":
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=int(row["rows_loaded"]))}))
        file_run = str(generate_new_uuid(row["started_at"].to_pydatetime()))
        facets = {"parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=self.run_uuid),
            job=parent_run.Job(namespace=self.namespace, name=RUN_JOB),
            root=None if self.parent is None else parent_run.Root(
                run=parent_run.RootRun(runId=self.parent.run_id),
                job=parent_run.RootJob(namespace=self.parent.namespace,
                                       name=self.parent.name)))}
        job = f"ingest.{source.name}"
        self._emit(self._event("START", row["started_at"].to_pydatetime(), job, file_run,
                               facets, [file_input]))
        if quarantined:
            facets = {**facets, "errorMessage": error_message_run.ErrorMessageRunFacet(
                message=row["reason"], programmingLanguage="python")}
        self._emit(self._event("FAIL" if quarantined else "COMPLETE",
                               row["finished_at"].to_pydatetime(), job, file_run, facets,
                               [file_input], outputs))


def _client(layout: Layout, run_id: str):
    """The client and where it sends events (None: nowhere, lineage not asked for, or a file
    asked for on an S3 root)."""
    url, mode = os.environ.get(URL_ENV), os.environ.get(MODE_ENV, "")
    if mode not in ("", "file"):
        raise ValueError(f"{MODE_ENV}={mode!r}: only 'file' (else set {URL_ENV})")
    if not url and mode == "file" and not storage.is_local(layout.root):
        log.warning("lineage: %s=file keeps events under a local root only; for %s set %s",
                    MODE_ENV, storage.uri(layout.root), URL_ENV)
    if not url and (mode != "file" or not storage.is_local(layout.root)):
        return None, None
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    if url:
        config = {"url": url, "timeout": 5.0, "retry": {"total": 2, "backoff_factor": 0.2},
                  **({"auth": {"type": "api_key", "apiKey": os.environ[KEY_ENV]}}
                     if os.environ.get(KEY_ENV) else {})}
        return OpenLineageClient(transport=HttpTransport(HttpConfig.from_dict(config))), url
    path = layout.reports / "lineage" / f"{run_id}.ndjson"
    storage.mkdirs(path.parent)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path),
                                                                append=True))), path


def _logged_since(layout: Layout, started: dt.datetime) -> list[dict]:
    """The ingest log's rows this run logged (its files, in the order they were logged): of
    the log the run read already, while it holds the root."""
    rows = logs.read_log(layout)[LOG_COLUMNS]
    # a file applied or quarantined (an earlier delivery a resent one superseded is no run)
    frame = rows[(rows["finished_at"] >= started)
                 & rows["status"].isin(["applied", "quarantined"])].sort_values("finished_at")
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _schema(table):
    from openlineage.client.facet_v2 import schema_dataset

    fields = delta.delta(table).schema().to_arrow() if delta.exists(table) else []
    return schema_dataset.SchemaDatasetFacet(fields=[
        schema_dataset.SchemaDatasetFacetFields(name=f.name, type=str(f.type))
        for f in fields])


def _assertions(layout: Layout, source, row: dict) -> list[tuple[str | None, str, int]]:
    """One assertion per rule of the source (column, rule, rows that broke it), counted from
    the file's error report; a file quarantined breaks one: it could be applied."""
    rules = [(name, check.name) for name, column in source.schema.columns.items()
             for check in column.checks] + [(None, c.name) for c in source.schema.checks]
    counts = reason_counts((r["errors"] for r in report_of(layout, source.name, row["file"])),
                           source.columns) if row["rows_rejected"] else {}
    out = [(c, f"{c}: {r}" if c else r, counts.get(f"{c}: {r}" if c else r, 0))
           for c, r in rules]
    out.append((None, "the file can be applied", int(row["status"] == "quarantined")))
    return out


def task_parent(dag_id: str, task_id: str, try_number: int, map_index: int,
                logical_date: dt.datetime) -> Parent:
    """An Airflow task as Airflow's OpenLineage provider names it: job ``<dag>.<task>`` in
    its namespace (``OPENLINEAGE_NAMESPACE``, else ``default``), run id the static UUID it
    makes of the logical date and the task's identity. A run given it as its parent
    (``run(lineage_parent=)``) joins the task's own events where the provider sends them."""
    from openlineage.client.uuid import generate_static_uuid

    namespace = os.environ.get("OPENLINEAGE_NAMESPACE") or "default"
    run_id = generate_static_uuid(instant=logical_date, data=(
        f"{namespace}.{dag_id}.{task_id}.{try_number}.{map_index}").encode())
    return Parent(namespace, f"{dag_id}.{task_id}", str(run_id))
