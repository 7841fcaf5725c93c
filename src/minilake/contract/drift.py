"""Schema drift by contract (docs/contracts.md): what a source does when a file's columns
differ from its declaration.

A source's :class:`Contract` says, for a column the file has beyond the declaration
(``new_column``), ``evolve`` (the table gains it: load/ingest.py), ``discard`` it (and say so)
or ``freeze`` (quarantine the file, as before contracts), and for a declared column the file
lacks (``missing_column``), ``evolve`` (the column stays in the table, empty from that file
on: versions open only for keys that had a value) or ``freeze``; a column it names as
``renamed`` is read as the declared one; ``vanished`` says what a key a snapshot lacks
becomes (load/scd2.py, load/datafiles.py); a change only in the columns it names ``in_place``
rewrites the current version instead of opening one (load/scd2.py). A
required column cannot be kept empty: a file without it is quarantined whatever the contract.
The defaults freeze, so a source that declares nothing reads its files exactly as before.

The readers find how a file's columns differ (``TextFrame.extra`` and ``missing``, when asked
to with ``drift``); :func:`settle` applies the contract to what they found and returns the
changes, one line each, which the run says and the schema log records.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa_
import pyarrow.compute as pc

from minilake.contract.schemas import WIDER
from minilake.contract.text import (
    as_arrow,
    is_blank,
    parse_date,
    parse_integer,
    parse_number,
    parse_timestamp,
)
from minilake.formats.readers import (
    TextFrame,
    UnreadableFile,
    missing_columns,
    unexpected_columns,
)
from minilake.lake import policy

if TYPE_CHECKING:
    from pathlib import Path

    import pandera.pandas as pa

NEW_COLUMN = ("evolve", "keep_extra", "discard", "freeze")
EXTRA = "_extra"        # the column ``keep_extra`` keeps a row's extra fields in, as JSON
MISSING_COLUMN = ("evolve", "freeze")
VANISHED = ("invalidate", "tombstone", "ignore")
SETTINGS = ("new_column", "missing_column", "renamed", "vanished", "personal", "in_place",
            "widen", "max_rejected", "over_budget")
OVER_BUDGET = ("fail", "warn")


class ContractError(ValueError):
    """A contract minilake cannot follow (a ``minilake.toml`` naming an unknown rule)."""


@dataclass(frozen=True)
class Contract:
    """A source's rules for a file whose columns differ from its declaration."""

    new_column: str = "freeze"
    missing_column: str = "freeze"
    # (a name in the file, the declared column it is): a renamed column read as the declared
    # one, not as one missing and one new (given as a mapping, kept as sorted pairs)
    renamed: tuple[tuple[str, str], ...] = ()
    # a key current before a snapshot and absent from it: its version closed (invalidate),
    # closed with a tombstone beside it (a version of no length, begun and ended that day:
    # "deleted on" is its effective_from), or left current (ignore)
    vanished: str = "invalidate"
    # columns the contract may add (new_column evolve or keep_extra) that hold personal data:
    # an erasure erases them as it erases the declared personal columns (docs/contracts.md)
    personal: tuple[str, ...] = ()
    # columns whose changes update the current version in place instead of opening a new one
    # (a last-seen time): a key whose row differs only in them keeps its version
    in_place: tuple[str, ...] = ()
    # declared columns whose type may widen (a date column that gains a time of day): a file
    # with wider values widens the table's column, in one commit of its own
    widen: tuple[str, ...] = ()
    # the share of a file's rows that may be rejected, a number from 0 to 1 or a percentage
    # ("5%"): beyond it the file is quarantined with the counts (fail) or applied and said to
    # be over (warn); None: no budget, the good rows applied whatever the share (docs/quality.md)
    max_rejected: float | str | None = None
    over_budget: str = "fail"

    def __post_init__(self) -> None:
        for rule, value, allowed in (("new_column", self.new_column, NEW_COLUMN),
                                     ("missing_column", self.missing_column, MISSING_COLUMN),
                                     ("vanished", self.vanished, VANISHED),
                                     ("over_budget", self.over_budget, OVER_BUDGET)):
            if value not in allowed:
                raise ContractError(f"{rule} = {value!r}: one of {', '.join(allowed)}")
        pairs = self.renamed.items() if isinstance(self.renamed, dict) else self.renamed
        pairs = tuple(sorted((str(k), v) for k, v in pairs))
        if any(not isinstance(v, str) for _, v in pairs):
            raise ContractError("renamed: each name must map to a column's name, as text")
        object.__setattr__(self, "renamed", pairs)
        for rule in ("personal", "in_place", "widen"):
            names = getattr(self, rule)
            names = (names,) if isinstance(names, str) else names
            if not isinstance(names, list | tuple) or any(
                    not isinstance(c, str) or not c for c in names):
                raise ContractError(f"{rule}: a list of column names, as text")
            object.__setattr__(self, rule, tuple(sorted(set(names))))
        object.__setattr__(self, "max_rejected", _share(self.max_rejected))

    def over(self, rejected: int, read: int) -> str | None:
        """What a file with ``rejected`` of its ``read`` rows rejected is over its budget by,
        in words; None within it (or with no budget)."""
        if self.max_rejected is None or not read or rejected <= self.max_rejected * read:
            return None
        return (f"{rejected} of {read} rows rejected ({rejected / read:.1%}), over the "
                f"source's budget of {self.max_rejected:.1%} (max_rejected)")

    @property
    def drifts(self) -> bool:
        """Whether a file's columns may differ from the declaration (read with ``drift``)."""
        return (self.new_column != "freeze" or self.missing_column != "freeze"
                or bool(self.renamed))


def _share(value: float | str | None) -> float | None:
    """A budget's share of rows: a number from 0 to 1, or a percentage as text ("5%")."""
    if value is None:
        return None
    given = value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ContractError(f"max_rejected = {given!r}: a share of a file's rows, from 0 to 1 "
                            f"or a percentage (\"5%\")")
    return float(value)


def settle(schema: pa.DataFrameSchema, contract: Contract, text: TextFrame,
           what: str = "column") -> list[str]:
    """Apply ``contract`` to how a file's columns differ from ``schema`` (what the reader
    found): the extra columns dropped from ``text`` when discarded, the changes as lines;
    UnreadableFile (quarantine) when the contract refuses them, in the words a file read
    without drift gets. ``what`` is what the form calls a column (a JSON key)."""
    problems, changes = [], []
    for old, declared_as in contract.renamed:
        if old in text.extra and declared_as in text.missing:
            text.rows[declared_as] = pd.arrays.ArrowExtensionArray(text.extra.pop(old))
            text.missing.remove(declared_as)
            changes.append(f"{what} {old!r} read as {declared_as!r} (renamed)")
    required = [c for c in text.missing if schema.columns[c].metadata["required"]]
    if text.missing and (contract.missing_column == "freeze" or required):
        problems.append(missing_columns(text.missing, what) + (
            f" (required: {', '.join(map(repr, required))} cannot be kept empty)"
            if required and contract.missing_column != "freeze" else ""))
    if text.extra and contract.new_column == "freeze":
        problems.append(unexpected_columns(list(text.extra), what))
    if problems:
        raise UnreadableFile("; ".join(problems))
    changes += [f"{what} {name!r} missing: kept, empty from this file on"
                for name in text.missing]
    if contract.new_column == "discard":
        changes += [f"{what} {name!r} discarded (new, not in the declaration)"
                    for name in text.extra]
        text.extra = {}
    elif contract.new_column == "keep_extra" and text.extra:
        said = what + ("s" if len(text.extra) > 1 else "")
        changes.append(f"{said} {', '.join(map(repr, text.extra))} kept in {EXTRA!r}")
        text.extra = {EXTRA: _as_json(text.extra)}
    return changes          # evolve: the extra columns stay, for the table (load/ingest.py)


def widenings(schema: pa.DataFrameSchema, contract: Contract, text: TextFrame
              ) -> dict[str, str]:
    """The columns of ``contract.widen`` whose text in the file holds a value of the wider
    kind that the declared kind does not read (a date with a time of day; a number that is
    no integer, ``2.5``), each with that kind: what the table must widen to before the file
    applies (docs/contracts.md). A value neither kind reads stays a bad row."""
    needs = {}
    for name in contract.widen:
        if name not in text.rows:
            continue
        values = as_arrow(text.rows[name])
        declared = schema.columns[name].metadata
        narrow = (parse_integer(values) if declared["kind"] == "int"
                  else parse_date(values, declared["date_format"]))
        wide = parse_number if declared["kind"] == "int" else parse_timestamp
        wider = pc.and_(pc.and_(pc.is_null(narrow), pc.invert(is_blank(values))),
                        pc.is_valid(wide(values)))
        if pc.any(wider).as_py():
            needs[name] = WIDER[declared["kind"]]
    return needs


def _as_json(extra: dict[str, pa_.Array | pa_.ChunkedArray]) -> pa_.Array:
    """Per row, its extra fields that hold a value as one JSON object (keys sorted, values
    as the text they arrived as); empty (null) where none does."""
    names = sorted(extra)
    columns = [extra[n].to_pylist() for n in names]
    out = []
    for values in zip(*columns, strict=True):
        held = {n: v for n, v in zip(names, values, strict=True) if v not in (None, "")}
        out.append(json.dumps(held, ensure_ascii=False, sort_keys=True) if held else "")
    return pa_.array(out, pa_.string())


def declared(root: Path) -> dict[str, Contract]:
    """The contracts a root's ``minilake.toml`` declares, by source (``[contract.<source>]``);
    a source it does not name keeps its declaration's."""
    text = policy.settings_text(root)
    if text is None:
        return {}
    where = root / policy.FILE
    try:
        settings = tomllib.loads(text).get("contract", {})
    except tomllib.TOMLDecodeError as error:
        raise ContractError(f"{where}: not TOML: {error}") from None
    contracts = {}
    for name, rules in settings.items():
        unknown = sorted(set(rules) - set(SETTINGS)) if isinstance(rules, dict) else [
            "(not a table)"]
        if unknown:
            raise ContractError(f"{where}: [contract.{name}] has no setting {unknown[0]!r} "
                                f"({', '.join(SETTINGS)})")
        try:
            contracts[name] = Contract(**rules)
        except ContractError as error:
            raise ContractError(f"{where}: [contract.{name}] {error}") from None
    return contracts
