"""An erasure request's plan and its steps on disk: the right to be forgotten, in every version
and every file (docs/guarantees.md).

An erasure rewrites the raw files, then repairs the customer table from them (from the first
file that held the person, docs/history.md), so the erased table is by construction what
applying the rewritten files in order gives. For a request file, in order:

1. resolve the customers it names (ids; emails matched case-insensitively against every raw
   customer row and every table version) and stage the rewritten raw files under
   ``tables/.erasure/<request>/`` with a manifest (ids, files, new sha256), written last;
2. put each staged file in place (one rename each: a file is before or after its rewrite);
3. repair the customer table from the first rewritten file's date on (the rewritten files
   are not "resent": the manifest names them), which rewrites those files' error reports too;
4. purge the table's earlier versions: checkpoint, log truncated to it, unreferenced files
   removed, so no Parquet value, footer or log statistic keeps the data;
5. scrub what else lies under the root: report and export files, pull scratch;
6. log the request in ``tables/_erasure_log`` (ids and counts, never personal data), rewrite
   the archived request file (each email replaced by the id it resolved to), write its error
   report and its ingest-log row, and drop the staging folder.

A run killed anywhere resumes from the manifest: the ids stay those first resolved, although
the raw files that held the emails may be rewritten already.

A raw row is erased field by field, everything else byte for byte as it was: a personal value
that passed validation becomes the placeholder, one that did not becomes ``[erased]`` (still
failing the same check), an empty one stays empty, so a bad row stays bad for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from minilake.crashpoints import crashpoint
from minilake.erasure.scrub import (
    CUSTOMER,
    customer_contract,
    emails_to_ids,
    holds,
    personal_values,
    raw_customer_files,
    scrub_file,
)
from minilake.lake import delta, storage
from minilake.lake.layout import Layout

log = logging.getLogger(__name__)


@dataclass
class Plan:
    request: str                                  # the request file's name
    ids: list[int]                                # every customer to erase
    how: dict[str, str] = field(default_factory=dict)      # id -> "customer_id" | "email"
    resolved: dict[str, list[int]] = field(default_factory=dict)   # email -> ids
    files: list[dict] = field(default_factory=list)        # {target, staged, sha256}
    versions: dict[str, int] = field(default_factory=dict)  # id -> its table versions
    unmatched: int = 0                            # emails that named nobody
    found: list[int] = field(default_factory=list)   # ids some raw row or version holds

    @property
    def anyone(self) -> bool:
        """Whether the request names anyone the root holds: else it changes nothing."""
        return bool(self.found)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls(**json.loads(text))

    def archived(self) -> set[str]:
        """Names of the archived files the plan rewrites (not resent deliveries)."""
        return {Path(f["target"]).name for f in self.files
                if Path(f["target"]).parts[0] == "archive"}


def staging(layout: Layout, request: str) -> Path:
    return layout.scratch("erasure") / request


def manifest(layout: Layout, request: str) -> Plan | None:
    path = staging(layout, request) / "manifest.json"
    return Plan.from_json(path.read_text(encoding="utf-8")) if path.is_file() else None


def plan(layout: Layout, request: str, ids: set[int], emails: set[str]) -> Plan:
    """Resolve the request and stage every rewritten raw customer file; the manifest, written
    last and atomically, makes the plan the one a resumed run follows."""
    resolved = emails_to_ids(layout, {e.lower() for e in emails})
    everyone = set(ids) | {i for found in resolved.values() for i in found}
    how = {str(i): "customer_id" for i in ids}
    how |= {str(i): "email" for found in resolved.values() for i in found if str(i) not in how}
    folder = staging(layout, request)
    storage.remove_tree(folder)
    storage.mkdirs(folder)
    counts: dict[str, int] = {}
    path = layout.table(CUSTOMER.name)
    if delta.exists(path) and everyone:
        held = delta.dataset(path).to_table(columns=["customer_id"]).column("customer_id")
        held = held.filter(pc.is_in(held, value_set=pa.array(sorted(everyone), pa.int64())))
        counts = {str(k): int(v) for k, v in pd.Series(held.to_numpy()).value_counts().items()}
    found = {i for i in everyone if counts.get(str(i))}
    contract = customer_contract(layout)
    values = personal_values(layout, everyone, contract.personal)
    files = []
    for n, path in enumerate(raw_customer_files(layout)):
        new = scrub_file(path, everyone, contract)
        target = path.relative_to(layout.root).as_posix()
        if new is None:         # a file that cannot be rewritten field by field (quarantined
            #                     or waiting, not read by minilake) goes if it holds the data
            if path.parent.parent != layout.root / "archive" and holds(path, values):
                files.append({"target": target, "staged": None, "sha256": None})
                found |= {i for i in everyone if str(i).encode() in path.read_bytes()}
            continue
        old = path.read_bytes()
        found |= {i for i in everyone if str(i).encode() in old}
        staged = folder / f"{n:05d}"
        storage.write_bytes(staged, new)
        files.append({"target": target, "staged": staged.name,
                      "sha256": hashlib.sha256(new).hexdigest()})
    result = Plan(request, sorted(everyone), how,
                  {e: sorted(named) for e, named in resolved.items()}, files,
                  {str(i): counts.get(str(i), 0) for i in everyone},
                  sum(1 for named in resolved.values() if not named), sorted(found))
    with storage.publish(folder / "manifest.json", "w", encoding="utf-8") as out:
        out.write(result.to_json())
        crashpoint("erasure.before_manifest")
    return result


def put_in_place(layout: Layout, plan: Plan) -> None:
    """Each staged file renamed over its original (done already where the staged one is
    gone; on S3 a copy, then a delete of the staged one: a crash between copies it again)."""
    folder = staging(layout, plan.request)
    for entry in plan.files:
        if entry["staged"] is None:          # no customer file: nothing to rewrite it by
            target = layout.root / entry["target"]
            if target.exists():
                storage.remove(target)
                log.warning("erasure %s: removed %s: it held an erased customer's data and is "
                            "no customer file minilake can rewrite field by field",
                            plan.request, entry["target"])
            continue
        staged = folder / entry["staged"]
        if staged.exists():
            storage.move(staged, layout.root / entry["target"])
            log.info("erasure %s: rewrote %s", plan.request, entry["target"])
            crashpoint("erasure.file_replaced")


def purge_history(path: Path) -> int:
    """Keep only the table's latest version: a checkpoint of it, the log before it removed,
    every file it does not reference deleted. Returns the version kept."""
    table = delta.delta(path)
    version = table.version()
    table.create_checkpoint()
    crashpoint("erasure.checkpointed")
    delta.remove_versions_before(path, version)
    return version
