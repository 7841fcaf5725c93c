"""Erasing customers from files (docs/guarantees.md): a raw row is erased field by field,
everything else byte for byte as it was: a personal value that passed validation becomes the
placeholder, one that did not becomes ``[erased]`` (still failing the same check), an empty one
stays empty, so a bad row stays bad for the same reason. Raw customer files (CSV and JSON, any
name), the request file itself (emails to the ids they named), and what lies under
``reports/`` and ``exports/`` (CSV, Avro, Parquet)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pandera.pandas as pa_schema
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from pandera.errors import SchemaErrors

from minilake.contract.drift import EXTRA, Contract
from minilake.contract.schemas import EMAIL
from minilake.contract.sources import SOURCES, of_root
from minilake.contract.text import parsing_once
from minilake.formats.readers import TEXT, check_json_depth
from minilake.formats.spans import (
    Unparseable,
    csv_records,
    json_members,
    record_starts,
    records_from,
    scalar_text,
    span_text,
    splice,
    text_start,
)
from minilake.lake import delta, storage
from minilake.lake.layout import Layout

log = logging.getLogger(__name__)

CUSTOMER = SOURCES["customer"]
PLACEHOLDERS = {"first_name": "[erased]", "last_name": "[erased]",
                "email": "erased@erased.invalid", "address": "", "phone_number": "",
                "date_of_birth": "1900-01-01"}
PERSONAL = list(PLACEHOLDERS)
INVALID = "[erased]"            # stands for a personal value that failed its check: still fails
UNKNOWN_EMAIL = "unknown@erased.invalid"   # a request's email that named nobody



def _customer_id(text: str) -> int | None:
    """The customer id a raw field holds: ASCII digits, as the contract reads an id
    (contract/schemas.py), with spaces, a sign or leading zeros around them; None if none. So
    an id's record always holds the id's own digits (what :func:`_holding_digits` looks for):
    a field of other digits (fullwidth ``７``) is no id, and is rejected when loaded."""
    text = text.strip()
    if re.fullmatch(r"[+-]?[0-9]+", text) and len(text) < 20:
        value = int(text)
        return value if -(2**63) <= value < 2**63 else None
    return None


# The personal fields whose placeholder is a value, each with its own column's checks: whether
# an erased value passed them is all an erasure asks (an emptied field is empty whatever it
# was). Validating the whole row (fifteen columns, the key's uniqueness) cost 40 ms a file, for
# every later snapshot that still holds an erased customer.
_CHECKED = pa_schema.DataFrameSchema(
    {c: CUSTOMER.schema.columns[c] for c in PERSONAL if PLACEHOLDERS[c]}, name="erased fields")


def _invalid_fields(rows: list[dict]) -> list[set[str]]:
    """For raw customer rows (text), the personal fields each fails validation on (each
    field by its column's checks, as :func:`minilake.load.validate.validate` checks it)."""
    frame = pd.DataFrame({c: pd.Series([r.get(c, "") for r in rows], dtype=TEXT)
                          for c in _CHECKED.columns})
    out: list[set[str]] = [set() for _ in rows]
    with parsing_once():
        try:
            _CHECKED.validate(frame, lazy=True, inplace=True)
        except SchemaErrors as failure:
            cases = failure.failure_cases
            for column, index in zip(cases["column"], cases["index"], strict=True):
                if column in _CHECKED.columns and not pd.isna(index):
                    out[int(index)].add(column)
    return out


def erased_values(rows: list[dict], columns: list[str], raw_validity: bool,
                  personal: tuple[str, ...] = ()) -> list[dict]:
    """The replacement of each personal column of each row (see the module's docstring).
    ``personal``: columns the customer contract adds that hold personal data (text nothing
    validates): a value becomes ``[erased]``, an empty one stays empty."""
    invalid = _invalid_fields(rows) if raw_validity else [set() for _ in rows]
    out = []
    for row, failing in zip(rows, invalid, strict=True):
        new = {}
        for column in columns:
            value = row.get(column, "")
            if column in personal:
                new[column] = "" if value == "" else INVALID
            if column not in PLACEHOLDERS:
                continue
            if value == "" or PLACEHOLDERS[column] == "":
                new[column] = ""
            else:
                new[column] = INVALID if column in failing else PLACEHOLDERS[column]
        out.append(new)
    return out


CANONICAL = r"^(|0|-?[1-9][0-9]{0,18})$"     # an id as str(int) writes it, or empty
# Below this many ids, each id's digits are looked for in the bytes (a pass an id) and only the
# records holding them are read, without the Arrow pass: an erasure of one customer looks at
# every raw file of three years, most of which never held them, and every snapshot delivered
# after an erasure still holds the few customers erased (Arrow's pass read the whole file for
# them: 46 of 100 ms for a 9 MB file, 50,000 customers).
ARROW_FROM = 8
# More records than this holding an id's digits (a short id: ``7`` is in most records) and
# they are not read one by one: the Arrow pass finds the id's records.
DIGITS_UP_TO = 64


def _present(data: bytes, header: list[tuple[int, int, bool]], at: int, ids: set[int]
             ) -> set[int] | None:
    """Of ``ids``, those the field ``at`` of some record after the ``header`` (its spans)
    holds, read by Arrow's CSV reader in one pass: looking for each id in turn took a pass
    over the file per id, and the ids erased grow with a lake's age (150 of them: 1.2 s for a
    9 MB file, against 0.03 s). None when Arrow cannot read the file so, or a field holds an
    id in another form than its plain digits (`` 7``, ``+7``, ``007``): each id is then
    looked for in the bytes, as before."""
    if not header:
        return None
    last = header[-1]
    end = last[1] + last[2]                 # after the header's last field (and its quote)
    end += 2 if data[end:end + 2] == b"\r\n" else 1
    names = [f"f{i}" for i in range(len(header))]
    try:
        column = pcsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)[end:]),
            read_options=pcsv.ReadOptions(column_names=names),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(include_columns=[names[at]],
                                                column_types={names[at]: pa.string()},
                                                strings_can_be_null=False)).column(0)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if not pc.all(pc.match_substring_regex(column, CANONICAL)).as_py():
        return None
    wanted = pa.array(sorted(ids), pa.int64())
    found = pc.is_in(pc.cast(wanted, pa.string()), value_set=column)
    return set(wanted.filter(found).to_pylist())


def _holding_digits(data: bytes, ids: set[int]) -> list[int] | None:
    """The starts of the records (after the header) in which the digits of one of ``ids``
    occur: among them every record whose ``customer_id`` is one of ``ids`` in any form
    (``7``, `` 7``, ``+7``, ``007``, quoted), since each form holds the id's digits. None when
    they occur more than DIGITS_UP_TO times."""
    return record_starts(data, sorted({str(abs(i)).encode() for i in ids}),
                         at_most=DIGITS_UP_TO)


def scrub_csv(data: bytes, ids: set[int], raw_validity: bool = True,
              renamed: dict[str, str] | None = None, personal: tuple[str, ...] = ()
              ) -> bytes:
    """A CSV file with a header and a ``customer_id`` column, the personal columns of the
    rows of ``ids`` erased; every other byte as it was. ``renamed``: a column's name in the
    file -> the declared column it is; ``personal``: the columns it may add that hold
    personal data (the source's contract, docs/contracts.md)."""
    if not ids:
        return data
    begin = text_start(data)
    spans = next(csv_records(data, begin), [])
    header = [(renamed or {}).get(name, name) for name in (span_text(data, s) for s in spans)]
    if "customer_id" not in header:
        return data
    at = header.index("customer_id")
    starts = _holding_digits(data, ids) if len(ids) < ARROW_FROM else None
    if starts is None and (present := _present(data, spans, at, ids)) is not None:
        if not present:
            return data
        # an id of ``present`` as a whole field: quoted, or bare between the separators its
        # column has on either side (a line end for the first or last column; the end of the
        # file counts as one: the haystack has a line end added)
        before = (b"\n", b"\r") if at == 0 else (b",",)
        after = (b"\n", b"\r") if at == len(spans) - 1 else (b",",)
        needles = [b'"%d"' % i for i in present] + [
            b"%s%d%s" % (a, i, z) for i in present for a in before for z in after]
        ids = present
        starts = record_starts(data, needles, haystack=data + b"\n")
    # neither search could tell (Arrow could not read the file, or an id is written with
    # spaces, a sign or leading zeros): every record
    records = csv_records(data, begin) if starts is None else records_from(data, starts)
    hits = []
    for spans in records:
        if at < len(spans) and _customer_id(span_text(data, spans[at])) in ids:
            hits.append(spans)
    if not hits:
        return data
    rows = [{header[i]: span_text(data, s) for i, s in enumerate(spans) if i < len(header)}
            for spans in hits]
    edits = []
    for spans, new in zip(hits, erased_values(rows, header, raw_validity, personal),
                          strict=True):
        for column, value in new.items():
            i = header.index(column)
            if i < len(spans):
                start, end, quoted = spans[i]
                text = value.replace('"', '""') if quoted else value
                edits.append((start, end, text.encode()))
    return splice(data, edits)


def scrub_json(text: str, ids: set[int], renamed: dict[str, str] | None = None,
               personal: tuple[str, ...] = ()) -> str:
    """A JSON array of customer objects, the personal members of the objects of ``ids``
    erased; every other character as it was (``renamed`` and ``personal`` as
    :func:`scrub_csv` takes them)."""
    if not ids or not any(str(i) in text for i in ids):
        return text
    check_json_depth(text)          # (a JSONDecodeError) before the parser's recursion
    hits = []
    for members in json_members(text):
        by_key = {(renamed or {}).get(m[0], m[0]): m for m in members}
        if "customer_id" in by_key and _customer_id(scalar_text(by_key["customer_id"][4])) in ids:
            hits.append(by_key)
    if not hits:
        return text
    rows = [{k: scalar_text(m[4]) for k, m in hit.items()} for hit in hits]
    edits = []
    for hit, new in zip(hits, erased_values(rows, [*CUSTOMER.columns, *personal], True,
                                            personal), strict=True):
        for column, value in new.items():
            if column in hit and hit[column][4] is not None:
                edits.append((hit[column][2], hit[column][3], json.dumps(value)))
    return splice(text, edits)


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


def customer_contract(layout: Layout) -> Contract:
    """The customer contract the root declares (docs/contracts.md): its renames and the
    personal columns it may add are erased like the declared personal columns."""
    return of_root(layout.root)[CUSTOMER.name].contract


def scrub_file(path: Path, ids: set[int], contract: Contract) -> bytes | None:
    """A raw customer file's bytes with ``ids`` erased, or None when nothing changes;
    ``contract``: the customer contract (:func:`customer_contract`), so that a personal
    column delivered under another name, or added by the contract, is erased too."""
    data = path.read_bytes()
    renamed, personal = dict(contract.renamed), contract.personal
    try:
        if _kind(path) == "json":
            text = data.decode("utf-8")
            new = scrub_json(text, ids, renamed, personal).encode("utf-8")
        else:
            new = scrub_csv(data, ids, renamed=renamed, personal=personal)
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
                yield {m[0]: scalar_text(m[4]) for m in members}
            return
        header = [span_text(data, s) for s in next(csv_records(data, text_start(data)), [])]
        for spans in records_from(data, record_starts(data, needles, lowered)):
            yield {header[i]: span_text(data, s) for i, s in enumerate(spans) if i < len(header)}
    except (Unparseable, UnicodeDecodeError, json.JSONDecodeError, IndexError):
        return


def rewrite_request(text: str, resolved: dict[str, set[int]]) -> str:
    """The request file with every email replaced: by ``"customer_id": "<id>"`` where it named
    one customer and the object names no id, else by a placeholder (valid or not as the email
    was), so that the file reads and validates as before but holds no email."""

    edits = []
    for members in json_members(text):
        keys = {m[0] for m in members}
        for key, key_start, start, end, value in members:
            if key != "email" or value in (None, ""):
                continue
            email = scalar_text(value)
            ids = resolved.get(email.strip().lower(), set())
            if len(ids) == 1 and not keys & {"customer_id", "customer-id"}:
                edits.append((key_start, end, f'"customer_id": "{next(iter(ids))}"'))
            else:
                valid = re.fullmatch(EMAIL, email) is not None
                edits.append((start, end, json.dumps(UNKNOWN_EMAIL if valid else INVALID)))
    return splice(text, edits)


def holds(path: Path, values: list[bytes]) -> bool:
    """Whether a file's bytes hold one of an erased customer's personal ``values``."""
    data = path.read_bytes()
    return any(v in data for v in values)


def scrub_outputs(layout: Layout, ids: set[int], values: list[bytes],
                  personal: tuple[str, ...] = ()) -> list[str]:
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
                    new = scrub_csv(data, ids, raw_validity=False, personal=personal)
                except Unparseable:
                    new = data
            elif path.suffix in (".avro", ".parquet"):
                new = _scrub_columnar(path, ids, personal)
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


def _scrub_columnar(path: Path, ids: set[int], personal: tuple[str, ...] = ()
                    ) -> bytes | None:
    """An Avro or Parquet export with the personal columns of ``ids`` set to placeholders
    (the exported values were valid ones; a contract's added ones: ``[erased]``)."""
    placeholders = PLACEHOLDERS | dict.fromkeys(personal, INVALID)
    import io  # on first use: start-up stays light

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # on first use: start-up stays light

        with path.open("rb") as handle:
            data = pq.read_table(handle)
        if "customer_id" not in data.column_names:
            return None
        mask = pc.is_in(data.column("customer_id"), value_set=pa.array(sorted(ids),
                                                                       pa.int64()))
        if not pc.any(mask).as_py():
            return None
        if personal and EXTRA in data.column_names:
            i = data.column_names.index(EXTRA)
            data = data.set_column(i, data.schema.field(EXTRA), pa.array(
                [_erased_extra(v, personal) if hit else v for v, hit in zip(
                    data.column(EXTRA).to_pylist(), mask.to_pylist(), strict=True)],
                data.schema.field(EXTRA).type))
        for column in placeholders:
            if column in data.column_names:
                i = data.column_names.index(column)
                kind = data.schema.field(column).type
                value = placeholders[column] or None
                if value is not None and pa.types.is_date32(kind):
                    value = dt.date.fromisoformat(value)
                data = data.set_column(i, data.schema.field(column), pc.if_else(
                    mask, pa.scalar(value, kind), data.column(column)))
        out = io.BytesIO()
        pq.write_table(data, out, compression="zstd")
        return out.getvalue()
    import fastavro  # on first use: start-up stays light

    with path.open("rb") as handle:
        reader = fastavro.reader(handle)
        schema, records = reader.writer_schema, list(reader)
    changed = False
    for record in records:
        if record.get("customer_id") in ids:
            changed = True
            if personal and record.get(EXTRA):
                record[EXTRA] = _erased_extra(record[EXTRA], personal)
            for column in placeholders:
                if column in record and record[column] not in (None, ""):
                    value = placeholders[column] or None
                    record[column] = (dt.date.fromisoformat(value) if column == "date_of_birth"
                                      else value)
    if not changed:
        return None
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), records, codec="deflate")
    return out.getvalue()


def _erased_extra(text: str | None, personal: tuple[str, ...]) -> str | None:
    """A ``keep_extra`` column's JSON object (docs/contracts.md) with the values of the
    ``personal`` fields erased, written as the contract writes it."""
    try:
        held = json.loads(text) if text else None
    except ValueError:
        return text
    if not isinstance(held, dict):
        return text
    held = {k: INVALID if k in personal and v not in (None, "") else v for k, v in held.items()}
    return json.dumps(held, ensure_ascii=False, sort_keys=True)


def personal_values(layout: Layout, ids: set[int], personal: tuple[str, ...] = ()
                    ) -> list[bytes]:
    """The distinctive personal values (email, phone, address, and those of the columns a
    contract added that hold personal data, ``personal``) the erased customers had, as they
    would appear in a file: to find files nothing else knows how to rewrite."""
    values: set[str] = set()
    path = layout.table(CUSTOMER.name)
    if delta.exists(path) and ids:
        dataset = delta.dataset(path)
        columns = ["email", "phone_number", "address",
                   *(c for c in personal if c in dataset.schema.names)]
        extra = [EXTRA] if personal and EXTRA in dataset.schema.names else []
        data = dataset.to_table(columns=["customer_id", *columns, *extra])
        mask = pc.is_in(data.column("customer_id"), value_set=pa.array(sorted(ids), pa.int64()))
        for column in columns:
            values |= {str(v) for v in data.column(column).filter(mask).to_pylist() if v}
        for text in data.column(EXTRA).filter(mask).to_pylist() if extra else []:
            held = json.loads(text) if text else {}
            values |= {str(held[k]) for k in personal if held.get(k)}
    for value in list(values):
        values.add(json.dumps(value)[1:-1])             # as JSON writes it
        values.add(value.replace('"', '""'))            # as CSV writes it
    return sorted(v.encode() for v in values if len(v) >= 6 and v not in PLACEHOLDERS.values())
