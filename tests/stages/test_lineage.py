"""OpenLineage events (issue 41, docs/quality.md): a run's events, checked against what the
OpenLineage spec requires of an event (openlineage-python 1.54 ships its generated classes,
not the JSON schemas: the requirements are written out here) and against the ingest log and
the error reports (read with ``csv``): one START and one COMPLETE or FAIL per run and per file,
each file's run a child of the run's, its table version, counts and one assertion per rule.
Over HTTP too, to a real server on 127.0.0.1, and a service that is down costs one line."""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import minilake
from minilake.contract.sources import ALL_SOURCES
from minilake.load.validate import reasons

SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
STATES = {"START", "COMPLETE", "FAIL"}


def assert_an_event(event: dict) -> None:
    """What the spec requires of a RunEvent (its required keys and their forms)."""
    assert set(event) >= {"eventTime", "producer", "schemaURL", "run", "job", "eventType"}
    assert event["schemaURL"] == SPEC and event["eventType"] in STATES
    assert dt.datetime.fromisoformat(event["eventTime"]).tzinfo is not None
    assert event["producer"].startswith("https://")
    uuid.UUID(event["run"]["runId"])
    assert event["job"]["namespace"] and event["job"]["name"]
    facets = [*event["run"].get("facets", {}).values()]
    for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
        assert dataset["namespace"] and dataset["name"]
        for kind in ("facets", "inputFacets", "outputFacets"):
            facets += dataset.get(kind, {}).values()
    for facet in facets:                        # every facet says who made it, and its schema
        assert facet["_producer"].startswith("https://")
        assert facet["_schemaURL"].startswith("https://openlineage.io/spec/facets/")


def events_of(root: Path, result) -> list[dict]:
    path = root / "reports" / "lineage" / f"{result.report.stem}.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines()]


def report_reasons(root: Path, source: str, file: str) -> dict[str, int]:
    """Rows per reason in a file's error report, read with ``csv``."""
    spec = ALL_SOURCES[source]
    path = root / "error_reports" / f"errors_{source}_{spec.report_stamp(file)}.csv"
    counts: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as text:
        for row in csv.DictReader(text):
            for reason in dict.fromkeys(reasons(row["errors"], spec.columns)):
                counts[reason] = counts.get(reason, 0) + 1
    return counts


@pytest.fixture(scope="module")
def lake(small_root, tmp_path_factory) -> dict:
    """The small world's days, then its broken day with a sales file that cannot be read,
    as the second run; that run's result and events."""
    root = tmp_path_factory.mktemp("lineage") / "root"
    for name in ("landing_zone", "samples"):
        shutil.copytree(small_root / name, root / name)
    assert minilake.run(root).ok
    minilake.land_sample(root, "broken_day")
    (root / "landing_zone" / "sales_20241001.txt").write_text("sale_id;customer_id\n1;2\n")
    parent = minilake.task_parent("minilake_daily", "run", 1, -1,
                                  dt.datetime(2024, 10, 16, tzinfo=dt.UTC))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MINILAKE_LINEAGE", "file")
        result = minilake.run(root, lineage_parent=parent)
    return {"root": root, "result": result, "events": events_of(root, result),
            "parent": parent}


def first_day(world: Path, root: Path) -> Path:
    """A root whose landing zone holds the first day of ``world``'s."""
    (root / "landing_zone").mkdir(parents=True)
    for path in (world / "landing_zone").glob("*20241009*"):
        shutil.copy(path, root / "landing_zone")
    return root


def test_no_lineage_unless_asked_for_and_the_client_not_even_imported(small_root, tmp_path):
    """By default a run sends no event and does not import the client (0.5-0.7 s)."""
    root = first_day(small_root, tmp_path / "root")
    code = ("import sys, minilake; assert minilake.run(sys.argv[1]).ok; "
            "print('openlineage' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINILAKE_LINEAGE")}
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False"]
    assert not (root / "reports" / "lineage").exists()


def test_one_start_and_one_end_per_run_and_per_file_each_a_child_of_the_run(lake):
    events, result = lake["events"], lake["result"]
    for event in events:
        assert_an_event(event)
    runs = [e for e in events if e["job"]["name"] == "run"]
    assert [e["eventType"] for e in runs] == ["START", "COMPLETE"]
    run_id = runs[0]["run"]["runId"]
    assert runs[1]["run"]["runId"] == run_id
    parent = lake["parent"]
    assert runs[0]["run"]["facets"]["parent"]["run"]["runId"] == parent.run_id
    job = runs[0]["run"]["facets"]["parent"]["job"]
    assert (job["namespace"], job["name"]) == (parent.namespace, "minilake_daily.run")
    files = {}
    for e in events:
        if e["job"]["name"] != "run":
            files.setdefault(e["run"]["runId"], []).append(e)
    want = {(f.source, f.file): f for f in result.ingest.files}
    assert len(files) == len(want)
    for chain in files.values():
        assert [e["eventType"] for e in chain] in (["START", "COMPLETE"], ["START", "FAIL"])
        facet = chain[-1]["run"]["facets"]["parent"]
        assert facet["run"]["runId"] == run_id and facet["job"]["name"] == "run"
        assert facet["root"]["run"]["runId"] == parent.run_id
        source = chain[0]["job"]["name"].removeprefix("ingest.")
        outcome = want[source, Path(chain[0]["inputs"][0]["name"]).name]
        assert (chain[-1]["eventType"] == "FAIL") == (outcome.status == "quarantined")
        if outcome.status == "quarantined":
            assert chain[-1]["run"]["facets"]["errorMessage"]["message"] == outcome.reason
            assert chain[-1]["outputs"] == []


def test_each_file_s_datasets_carry_its_version_counts_and_one_assertion_per_rule(lake):
    root, events = lake["root"], lake["events"]
    log = minilake.sql("SELECT * FROM ingest_log ORDER BY finished_at", root=root)
    ends = [e for e in events if e["job"]["name"] != "run" and e["eventType"] != "START"]
    assert ends
    for e in ends:
        source = e["job"]["name"].removeprefix("ingest.")
        file = Path(e["inputs"][0]["name"]).name
        row = log[(log["source"] == source) & (log["file"] == file)].iloc[-1]
        quality = e["inputs"][0]["inputFacets"]
        assert quality["dataQualityMetrics"]["rowCount"] == row["rows_read"]
        assertions = quality["dataQualityAssertions"]["assertions"]
        spec = ALL_SOURCES[source]
        rules = sum(len(c.checks) for c in spec.schema.columns.values()) + len(
            spec.schema.checks)
        assert len(assertions) == rules + 1                     # and "can be applied"
        failed = {a["assertion"]: int(a["actual"]) for a in assertions if not a["success"]}
        if row["status"] == "quarantined":
            assert failed == {"the file can be applied": 1}
            continue
        assert failed == (report_reasons(root, source, file) if row["rows_rejected"] else {})
        table = root / "tables" / source
        (out,) = e["outputs"]
        assert out["name"] == str(table) and out["namespace"] == "file"
        assert out["facets"]["version"]["datasetVersion"] == str(row["table_version"])
        assert out["outputFacets"]["outputStatistics"]["rowCount"] == row["rows_loaded"]
        assert {f["name"] for f in out["facets"]["schema"]["fields"]} >= set(spec.columns)
    assert any(e["eventType"] == "COMPLETE" and any(
        not a["success"] for a in e["inputs"][0]["inputFacets"]["dataQualityAssertions"]
        ["assertions"]) for e in ends), "the broken day's rules broken"


def test_events_go_over_http_and_a_service_down_costs_one_line(small_root, tmp_path,
                                                                httpserver, monkeypatch):
    """``MINILAKE_LINEAGE_URL``: the events are POSTed to the service's lineage endpoint
    (a real HTTP server on 127.0.0.1), with the key as a bearer token; a service that does
    not answer is said in one line, the run's later events not tried (counted), and the run is
    as without it."""
    received = []
    httpserver.expect_request("/api/v1/lineage", method="POST").respond_with_handler(
        lambda request: (received.append((request.headers.get("Authorization"),
                                          request.get_json())), "")[1])
    root = first_day(small_root, tmp_path / "root")
    monkeypatch.setenv("MINILAKE_LINEAGE_URL", httpserver.url_for("/"))
    monkeypatch.setenv("MINILAKE_LINEAGE_API_KEY", "k3y")
    result = minilake.run(root)
    assert result.ok
    assert {a for a, _ in received} == {"Bearer k3y"}
    assert [e["eventType"] for _, e in received if e["job"]["name"] == "run"] == [
        "START", "COMPLETE"]
    assert len(received) == 2 + 2 * len(result.ingest.files)
    assert not (root / "reports" / "lineage").exists()

    down = first_day(small_root, tmp_path / "down")
    monkeypatch.setenv("MINILAKE_LINEAGE_URL", "http://127.0.0.1:9/")
    heard: list[logging.LogRecord] = []
    ear = logging.Handler(logging.WARNING)
    ear.emit = heard.append
    logging.getLogger("minilake.outbound.lineage").addHandler(ear)
    try:
        done = minilake.run(down)
    finally:
        logging.getLogger("minilake.outbound.lineage").removeHandler(ear)
    assert done.ok
    said = [r.getMessage() for r in heard]
    assert len(said) == 2 and "was not delivered to http://127.0.0.1:9/" in said[0]
    assert said[1] == (f"lineage: {2 + 2 * len(done.ingest.files)} event(s) of this run not "
                       f"delivered to http://127.0.0.1:9/")
