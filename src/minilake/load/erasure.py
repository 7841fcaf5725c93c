"""Erasure requests: the right to be forgotten, in every version and every file (SPEC §9).

An erasure rewrites the raw files, then rebuilds the customer table from them, so the erased
table is by construction what a rebuild gives. For a request file, in order:

1. resolve the customers it names (ids; emails matched case-insensitively against every raw
   customer row and every table version) and stage the rewritten raw files under
   ``tables/.erasure/<request>/`` with a manifest (ids, files, new sha256), written last;
2. put each staged file in place (one rename each: a file is before or after its rewrite);
3. rebuild the customer table from the archive (the rewritten files are not "resent": the
   manifest names them), which rewrites the customer error reports too;
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

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from minilake.contract.sources import SOURCES, Source
from minilake.crashpoints import crashpoint
from minilake.formats.readers import TEXT, TextFrame, check_json_depth
from minilake.lake import delta, storage
from minilake.lake.layout import Layout
from minilake.load.validate import validate

log = logging.getLogger(__name__)

CUSTOMER = SOURCES["customer"]
PLACEHOLDERS = {"first_name": "[erased]", "last_name": "[erased]",
                "email": "erased@erased.invalid", "address": "", "phone_number": "",
                "date_of_birth": "1900-01-01"}
PERSONAL = list(PLACEHOLDERS)
INVALID = "[erased]"            # stands for a personal value that failed its check: still fails
UNKNOWN_EMAIL = "unknown@erased.invalid"   # a request's email that named nobody


# --- raw CSV, field by field with byte offsets ------------------------------------------------

_QUOTED = re.compile(rb'"((?:[^"]|"")*)"')
_BARE = re.compile(rb'[^,\r\n"]*')


class Unparseable(Exception):
    """Not CSV as SPEC §1 writes it (a stray quote, say): cannot be rewritten field by field."""


def csv_records(data: bytes, pos: int = 0) -> Iterator[list[tuple[int, int, bool]]]:
    """Each record from byte ``pos`` on as its fields' (start, end, quoted) byte spans, the
    quotes excluded."""
    size = len(data)
    while pos < size:
        fields = []
        while True:
            quoted = _QUOTED.match(data, pos)
            if quoted:
                fields.append((quoted.start(1), quoted.end(1), True))
                pos = quoted.end()
            else:
                bare = _BARE.match(data, pos)
                fields.append((bare.start(), bare.end(), False))
                pos = bare.end()
            if data[pos:pos + 1] == b",":
                pos += 1
                continue
            if data[pos:pos + 2] == b"\r\n":
                pos += 2
            elif data[pos:pos + 1] in (b"\n", b"\r"):
                pos += 1
            elif pos < size:
                raise Unparseable(f"unexpected {data[pos:pos + 1]!r} at byte {pos}")
            break
        yield fields


def record_starts(data: bytes, needles: list[bytes], haystack: bytes | None = None
                  ) -> list[int]:
    """Byte offsets of the records (after the header) in which any needle occurs, found
    without tokenizing the whole file: a record starts after a line end outside quotes, that
    is with an even number of quotes before it. ``haystack`` is ``data`` as searched (its
    lower-case copy, to match any letter case)."""
    haystack = data if haystack is None else haystack
    starts = set()
    for needle in needles:
        at = haystack.find(needle)
        while at != -1:
            start = data.rfind(b"\n", 0, at) + 1
            while start and data.count(b'"', 0, start) % 2:
                start = data.rfind(b"\n", 0, start - 1) + 1
            if start:
                starts.add(start)
            at = haystack.find(needle, at + len(needle))
    return sorted(starts)


def _records_from(data: bytes, starts: list[int]) -> Iterator[list[tuple[int, int, bool]]]:
    """The records beginning at ``starts``, tokenized one by one."""
    for start in starts:
        yield next(csv_records(data, start))


def _text(data: bytes, span: tuple[int, int, bool]) -> str:
    start, end, quoted = span
    raw = data[start:end]
    return (raw.replace(b'""', b'"') if quoted else raw).decode("utf-8", "replace")


def _customer_id(text: str) -> int | None:
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text) and len(text) < 20:
        value = int(text)
        return value if -(2**63) <= value < 2**63 else None
    return None


def _invalid_fields(rows: list[dict]) -> list[set[str]]:
    """For raw customer rows (text), the personal fields each fails validation on."""
    frame = pd.DataFrame({c: pd.Series([r.get(c, "") for r in rows], dtype=TEXT)
                          for c in CUSTOMER.columns})
    bad = validate(CUSTOMER.schema, CUSTOMER.key, TextFrame(frame)).bad
    out = [set() for _ in rows]
    if len(bad):
        # bad rows come back in order; match them to the rows by their whole text
        wanted = {tuple(r.get(c, "") for c in CUSTOMER.columns): i for i, r in enumerate(rows)}
        for _, row in bad.iterrows():
            i = wanted.get(tuple(row[c] for c in CUSTOMER.columns))
            if i is not None:
                parts = str(row["errors"]).split("; ")
                out[i] = {f for f in PERSONAL if any(p.startswith(f + ": ") for p in parts)}
    return out


def erased_values(rows: list[dict], columns: list[str], raw_validity: bool) -> list[dict]:
    """The replacement of each personal column of each row (see the module's docstring)."""
    invalid = _invalid_fields(rows) if raw_validity else [set() for _ in rows]
    out = []
    for row, failing in zip(rows, invalid, strict=True):
        new = {}
        for column in columns:
            if column not in PLACEHOLDERS:
                continue
            value = row.get(column, "")
            if value == "" or PLACEHOLDERS[column] == "":
                new[column] = ""
            else:
                new[column] = INVALID if column in failing else PLACEHOLDERS[column]
        out.append(new)
    return out


def scrub_csv(data: bytes, ids: set[int], raw_validity: bool = True) -> bytes:
    """A CSV file with a header and a ``customer_id`` column, the personal columns of the
    rows of ``ids`` erased; every other byte as it was."""
    if not ids or not any(str(i).encode() in data for i in ids):
        return data
    header = [_text(data, s) for s in next(csv_records(data), [])]
    if "customer_id" not in header:
        return data
    at = header.index("customer_id")
    hits = []
    # an id as a whole field: quoted (SPEC §1), or bare at a line start; else (a report
    # written by pandas: ids bare and not first) every record is looked at
    needles = [form % i for i in ids for form in (b'"%d"', b"\n%d,")]
    starts = record_starts(data, needles)
    records = _records_from(data, starts) if starts else csv_records(data)
    for spans in records:
        if at < len(spans) and _customer_id(_text(data, spans[at])) in ids:
            hits.append(spans)
    if not hits:
        return data
    rows = [{header[i]: _text(data, s) for i, s in enumerate(spans) if i < len(header)}
            for spans in hits]
    edits = []
    for spans, new in zip(hits, erased_values(rows, header, raw_validity), strict=True):
        for column, value in new.items():
            i = header.index(column)
            if i < len(spans):
                start, end, quoted = spans[i]
                text = value.replace('"', '""') if quoted else value
                edits.append((start, end, text.encode()))
    return _splice(data, edits)


def _splice(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out, last = [], 0
    for start, end, text in sorted(edits):
        out += [data[last:start], text]
        last = end
    out.append(data[last:])
    return b"".join(out)


# --- raw JSON arrays, member by member with character offsets ---------------------------------

_DECODER = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)
_SPACE = re.compile(r"\s*")


def _skip(text: str, i: int) -> int:
    return _SPACE.match(text, i).end()


def json_members(text: str) -> Iterator[list[tuple[str, int, int, int, object]]]:
    """Each object of a JSON array as its members: (key, key start, value start, value end,
    value). Elements that are not objects are skipped."""
    i = _skip(text, 1 if text.startswith("\ufeff") else 0)
    if text[i:i + 1] != "[":
        raise Unparseable("not a JSON array")
    i = _skip(text, i + 1)
    while i < len(text) and text[i] != "]":
        if text[i] == "{":
            members, j = [], _skip(text, i + 1)
            while text[j] != "}":
                key, after = _DECODER.raw_decode(text, j)
                colon = _skip(text, after)
                start = _skip(text, colon + 1)
                value, end = _DECODER.raw_decode(text, start)
                members.append((key, j, start, end, value))
                j = _skip(text, end)
                if text[j] == ",":
                    j = _skip(text, j + 1)
            yield members
            i = j + 1
        else:
            _, i = _DECODER.raw_decode(text, i)
        i = _skip(text, i)
        if text[i:i + 1] == ",":
            i = _skip(text, i + 1)


def _scalar(value: object) -> str:
    return "" if value is None else str(value) if not isinstance(value, bool) else (
        "true" if value else "false")


def scrub_json(text: str, ids: set[int]) -> str:
    """A JSON array of customer objects, the personal members of the objects of ``ids``
    erased; every other character as it was."""
    if not ids or not any(str(i) in text for i in ids):
        return text
    check_json_depth(text)          # (a JSONDecodeError) before the parser's recursion
    hits = []
    for members in json_members(text):
        by_key = {m[0]: m for m in members}
        if "customer_id" in by_key and _customer_id(_scalar(by_key["customer_id"][4])) in ids:
            hits.append(by_key)
    if not hits:
        return text
    rows = [{k: _scalar(m[4]) for k, m in hit.items()} for hit in hits]
    edits = []
    for hit, new in zip(hits, erased_values(rows, CUSTOMER.columns, True), strict=True):
        for column, value in new.items():
            if column in hit and hit[column][4] is not None:
                edits.append((hit[column][2], hit[column][3], json.dumps(value)))
    out, last = [], 0
    for start, end, new_text in sorted(edits):
        out += [text[last:start], new_text]
        last = end
    return "".join(out) + text[last:]


# --- where a customer's raw rows lie ----------------------------------------------------------

def raw_customer_files(layout: Layout) -> list[Path]:
    """Every raw file under the root that may hold a customer's row: the customer files
    archived (superseded copies too) and quarantined, and every file waiting in the landing
    zone whatever its name (one that matches no source stays there, and may be a customer
    export under another name)."""
    out = []
    for folder in (layout.archive(CUSTOMER.name), layout.quarantine(CUSTOMER.name),
                   layout.landing):
        out += [p for p in storage.files(folder)
                if not p.name.endswith(".reason.txt") and not p.name.startswith(".")]
    return out


def _kind(path: Path) -> str:
    base = path.name.split(".superseded-")[0]
    return "json" if base.endswith(".json") else "csv"


def scrub_file(path: Path, ids: set[int]) -> bytes | None:
    """A raw customer file's bytes with ``ids`` erased, or None when nothing changes."""
    data = path.read_bytes()
    try:
        if _kind(path) == "json":
            text = data.decode("utf-8")
            new = scrub_json(text, ids).encode("utf-8")
        else:
            new = scrub_csv(data, ids)
    except (Unparseable, UnicodeDecodeError, json.JSONDecodeError, IndexError) as error:
        log.warning("%s: %s; the erased customers' values are replaced where found instead",
                    path.name, error)
        new = data
    return None if new == data else new


def emails_to_ids(layout: Layout, emails: set[str]) -> dict[str, set[int]]:
    """Each email (lower case) -> the customer ids whose raw rows or table versions carry it."""
    found: dict[str, set[int]] = {e: set() for e in emails}
    if not emails:
        return found
    path = layout.table(CUSTOMER.name)
    if delta.exists(path):
        versions = delta.dataset(path).to_table(columns=["customer_id", "email"])
        lower = pc.utf8_lower(versions.column("email"))
        mask = pc.is_in(lower, value_set=pa.array(sorted(emails)))
        for cid, email in zip(versions.column("customer_id").filter(mask).to_pylist(),
                              lower.filter(mask).to_pylist(), strict=True):
            found[email].add(cid)
    for raw in raw_customer_files(layout) + sorted(
            storage.files(layout.root / "error_reports", f"errors_{CUSTOMER.name}_*.csv")):
        data = raw.read_bytes()
        lowered = data.lower()
        if not any(e.encode() in lowered for e in emails):
            continue
        for row in _raw_rows(raw, data, [e.encode() for e in emails], lowered):
            email = row.get("email", "").strip().lower()
            cid = _customer_id(row.get("customer_id", ""))
            if email in found and cid is not None:
                found[email].add(cid)
    return found


def _raw_rows(path: Path, data: bytes, needles: list[bytes], lowered: bytes
              ) -> Iterator[dict]:
    """The raw rows of a customer file that hold one of ``needles`` (in ``lowered``)."""
    try:
        if _kind(path) == "json":
            text = data.decode("utf-8")
            for members in json_members(text):
                yield {m[0]: _scalar(m[4]) for m in members}
            return
        header = [_text(data, s) for s in next(csv_records(data), [])]
        for spans in _records_from(data, record_starts(data, needles, lowered)):
            yield {header[i]: _text(data, s) for i, s in enumerate(spans) if i < len(header)}
    except (Unparseable, UnicodeDecodeError, json.JSONDecodeError, IndexError):
        return


# --- the request file -------------------------------------------------------------------------

def rewrite_request(text: str, resolved: dict[str, set[int]]) -> str:
    """The request file with every email replaced: by ``"customer_id": "<id>"`` where it named
    one customer and the object names no id, else by a placeholder (valid or not as the email
    was), so that the file reads and validates as before but holds no email."""
    from minilake.contract.schemas import EMAIL

    edits = []
    for members in json_members(text):
        keys = {m[0] for m in members}
        for key, key_start, start, end, value in members:
            if key != "email" or value in (None, ""):
                continue
            email = _scalar(value)
            ids = resolved.get(email.strip().lower(), set())
            if len(ids) == 1 and not keys & {"customer_id", "customer-id"}:
                edits.append((key_start, end, f'"customer_id": "{next(iter(ids))}"'))
            else:
                valid = re.fullmatch(EMAIL, email) is not None
                edits.append((start, end, json.dumps(UNKNOWN_EMAIL if valid else INVALID)))
    out, last = [], 0
    for start, end, new_text in sorted(edits):
        out += [text[last:start], new_text]
        last = end
    return "".join(out) + text[last:]


# --- the plan of one request, and its manifest -------------------------------------------------

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
    values = personal_values(layout, everyone)
    files = []
    for n, path in enumerate(raw_customer_files(layout)):
        new = scrub_file(path, everyone)
        target = path.relative_to(layout.root).as_posix()
        if new is None:         # a file that cannot be rewritten field by field (quarantined
            #                     or waiting, not read by minilake) goes if it holds the data
            if path.parent.parent != layout.root / "archive" and _holds(path, values):
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


def _holds(path: Path, values: list[bytes]) -> bool:
    """Whether a file's bytes hold one of an erased customer's personal ``values``."""
    data = path.read_bytes()
    return any(v in data for v in values)


def purge_history(path: Path) -> int:
    """Keep only the table's latest version: a checkpoint of it, the log before it removed,
    every file it does not reference deleted. Returns the version kept."""
    table = delta.delta(path)
    version = table.version()
    table.create_checkpoint()
    crashpoint("erasure.checkpointed")
    for entry in storage.files(path / "_delta_log"):
        stem = entry.name.split(".")[0]
        if stem.isdigit() and int(stem) < version:
            storage.remove(entry)
    delta.remove_orphans(path, keep_versions=[version])
    return version


def scrub_outputs(layout: Layout, ids: set[int], values: list[bytes]) -> list[str]:
    """Reports and exports under the root: CSVs rewritten like raw files (their values were
    valid), Avro and Parquet exports rewritten with placeholders, and any other file that
    still holds an erased value (a saved notebook, an HTML export) removed. Pull scratch of
    customers goes too. Returns what was done, a line each."""
    done = []
    for folder in (layout.reports, layout.exports):
        for path in storage.tree(folder):
            rel = path.relative_to(layout.root).as_posix()
            data = path.read_bytes()
            new = None
            if path.suffix == ".csv":
                try:
                    new = scrub_csv(data, ids, raw_validity=False)
                except Unparseable:
                    new = data
            elif path.suffix in (".avro", ".parquet"):
                new = _scrub_columnar(path, ids)
            if new is not None and new != data:
                storage.write_bytes(path, new)
                done.append(f"rewrote {rel}")
            elif any(v in (new or data) for v in values):
                storage.remove(path)
                done.append(f"removed {rel}: it held an erased customer's data (generate it "
                            f"again)")
    for path in storage.files(layout.scratch("pull"), "customer_*"):
        storage.remove(path)
        done.append(f"removed {path.relative_to(layout.root).as_posix()} (an unfinished pull)")
    return done


def _scrub_columnar(path: Path, ids: set[int]) -> bytes | None:
    """An Avro or Parquet export with the personal columns of ``ids`` set to placeholders
    (the exported values were valid ones)."""
    import io

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        with path.open("rb") as handle:
            data = pq.read_table(handle)
        if "customer_id" not in data.column_names:
            return None
        mask = pc.is_in(data.column("customer_id"), value_set=pa.array(sorted(ids),
                                                                       pa.int64()))
        if not pc.any(mask).as_py():
            return None
        for column in PERSONAL:
            if column in data.column_names:
                i = data.column_names.index(column)
                kind = data.schema.field(column).type
                value = PLACEHOLDERS[column] or None
                if value is not None and pa.types.is_date32(kind):
                    value = dt.date.fromisoformat(value)
                data = data.set_column(i, data.schema.field(column), pc.if_else(
                    mask, pa.scalar(value, kind), data.column(column)))
        out = io.BytesIO()
        pq.write_table(data, out, compression="zstd")
        return out.getvalue()
    import fastavro

    with path.open("rb") as handle:
        reader = fastavro.reader(handle)
        schema, records = reader.writer_schema, list(reader)
    changed = False
    for record in records:
        if record.get("customer_id") in ids:
            changed = True
            for column in PERSONAL:
                if column in record and record[column] not in (None, ""):
                    value = PLACEHOLDERS[column] or None
                    record[column] = (dt.date.fromisoformat(value) if column == "date_of_birth"
                                      else value)
    if not changed:
        return None
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), records, codec="deflate")
    return out.getvalue()


def personal_values(layout: Layout, ids: set[int]) -> list[bytes]:
    """The distinctive personal values (email, phone, address) the erased customers had, as
    they would appear in a file: to find files nothing else knows how to rewrite."""
    values: set[str] = set()
    path = layout.table(CUSTOMER.name)
    if delta.exists(path) and ids:
        data = delta.dataset(path).to_table(columns=["customer_id", "email", "phone_number",
                                                      "address"])
        mask = pc.is_in(data.column("customer_id"), value_set=pa.array(sorted(ids), pa.int64()))
        for column in ("email", "phone_number", "address"):
            values |= {v for v in data.column(column).filter(mask).to_pylist() if v}
    for value in list(values):
        values.add(json.dumps(value)[1:-1])             # as JSON writes it
        values.add(value.replace('"', '""'))            # as CSV writes it
    return sorted(v.encode() for v in values if len(v) >= 6 and v not in PLACEHOLDERS.values())


def erasure_source() -> Source:
    from minilake.contract.sources import ERASURE_REQUESTS

    return ERASURE_REQUESTS
